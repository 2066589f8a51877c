import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  rootEvents,
  startEdge,
  startRoot,
  synced,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { moduleFromEnvironment } from "../helpers/module.js";

describe("local routing on an edge hub", () => {
  it("a filter module gets a child's messages on input1 by a route with a WHERE clause, and its output goes upstream", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const filter = await root.registry.createModule({ deviceId: "edge1", moduleId: "filter" });
    const key = await childOf(root, "edge1", "sensor");
    const edge = await startEdge(await tempDir(), parent, {
      routes: {
        toFilter:
          "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) AND alert = 'true' INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
        filtered: "FROM /messages/modules/filter/outputs/alerts INTO $upstream",
      },
    });
    await synced(edge);

    // The filter module, as the SDK runs it on an edge device.
    const caFile = join(await tempDir(), "edge-ca.pem");
    await writeFile(caFile, edge.caCertificate);
    const mod = await moduleFromEnvironment(
      `HostName=localhost;DeviceId=edge1;ModuleId=filter;SharedAccessKey=${filter.authentication.symmetricKey?.primaryKey};GatewayHostName=127.0.0.1:${edge.ports.mqtts}`,
      caFile,
    );
    const inputs: string[] = [];
    mod.on("inputMessage", (input: string, m: Message) => {
      inputs.push(`${input}:${m.getData().toString()}`);
      const out = new Message(`filtered ${m.getData().toString()}`);
      out.properties.add("from", String(m.properties.getValue("n")));
      void mod.complete(m).then(() => mod.sendOutputEvent("alerts", out));
    });
    await mod.open();

    const sensor = await childClient(gatewayOf(edge), "sensor", key);
    await sensor.open();
    for (const [n, alert] of [
      ["1", "true"],
      ["2", "false"],
      ["3", "true"],
    ] as const) {
      const m = new Message(`reading ${n}`);
      m.properties.add("alert", alert);
      m.properties.add("n", n);
      await sensor.sendEvent(m);
    }
    await eventually("two filtered at the root", async () => (await rootEvents(root)).length >= 2);
    expect(inputs).toEqual(["input1:reading 1", "input1:reading 3"]);
    const events = await rootEvents(root);
    expect(events.map((m) => m.body.toString())).toEqual(["filtered reading 1", "filtered reading 3"]);
    expect(events[0]?.properties).toMatchObject({ "$.cdid": "edge1", "$.cmid": "filter", from: "1" });
    // As Microsoft's edge hub, the module's output name stays on the edge (CloudProxy sends
    // with SendEventAsync, no output).
    expect(events[0]?.properties).not.toHaveProperty("$.on");
    // The sensor's messages without the alert match no route: counted, not forwarded.
    expect(await edge.status()).toMatchObject({ routes: 2, unroutedMessages: 1 });
    await mod.close();
  });
});
