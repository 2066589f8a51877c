import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { EVENTS_QUEUE } from "../../ts/index.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, startHub, type Transport } from "../helpers/hub.js";
import { moduleFromEnvironment } from "../helpers/module.js";

describe.each<Transport>(["mqtt", "amqp"])(
  "modules through ModuleClient.fromEnvironment over %s",
  (transport) => {
    it("connect with EdgeHubConnectionString and EdgeModuleCACertificateFile; outputs and twins are the module's own", async () => {
      const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
      await hub.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
      const mod = await hub.registry.createModule({ deviceId: "edge1", moduleId: "filter" });
      const port = transport === "mqtt" ? hub.ports.mqtts : hub.ports.amqps;
      const client = await moduleFromEnvironment(
        `HostName=localhost;DeviceId=edge1;ModuleId=filter;SharedAccessKey=${mod.authentication.symmetricKey?.primaryKey};GatewayHostName=localhost:${port}`,
        hub.caFile,
        transport,
      );
      await client.open();
      try {
        await client.sendOutputEvent("alerts", new Message("hot"));
        const twin = await client.getTwin();
        await new Promise<void>((resolve, reject) =>
          twin.properties.reported.update({ state: "ok" }, (err?: Error) => (err ? reject(err) : resolve())),
        );
        const [stored] = await hub.store.read(EVENTS_QUEUE);
        expect(stored?.body.toString()).toBe("hot");
        expect(stored?.properties).toMatchObject({ "$.on": "alerts", "$.cdid": "edge1", "$.cmid": "filter" });
        expect((await hub.twins.get("edge1/filter")).reported.properties).toEqual({ state: "ok" });
        expect((await hub.twins.get("edge1")).reported.version).toBe(1);
        expect(hub.connectedClients).toEqual(["edge1/filter"]);
      } finally {
        await client.close();
      }
    });
  },
);

describe("modules through ModuleClient.fromEnvironment", () => {
  it("receive their inputs durably and in order, queued while the module is away", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    await hub.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    const mod = await hub.registry.createModule({ deviceId: "edge1", moduleId: "filter" });
    await hub.delivery.sendToInput("edge1", "filter", "input1", {
      body: Buffer.from("queued"),
      properties: { n: "1" },
    });
    const client = await moduleFromEnvironment(
      `HostName=localhost;DeviceId=edge1;ModuleId=filter;SharedAccessKey=${mod.authentication.symmetricKey?.primaryKey};GatewayHostName=localhost:${hub.ports.mqtts}`,
      hub.caFile,
    );
    await client.open();
    try {
      const got: Array<[string, string, string | undefined]> = [];
      client.on("inputMessage", (input: string, m: Message) => {
        got.push([input, m.data.toString(), m.properties.getValue("n")]);
        client.complete(m, () => undefined);
      });
      await eventually("queued input", () => got.length === 1);
      await hub.delivery.sendToInput("edge1", "filter", "control", {
        body: Buffer.from("live"),
        properties: { n: "2" },
      });
      await eventually("live input", () => got.length === 2);
      expect(got).toEqual([
        ["input1", "queued", "1"],
        ["control", "live", "2"],
      ]);
      await eventually(
        "acked",
        async () =>
          ((await hub.store.stats()).queues.find((q) => q.name === "$inputs/edge1/filter")?.count ?? 1) === 0,
      );
    } finally {
      await client.close();
    }
  });
});

describe("module inputs with route priorities", () => {
  it("a restarted module gets its queued inputs, the more urgent route's first, each in stored order", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), {
      routes: {
        urgent: {
          route:
            "FROM /messages/modules/source/outputs/* WHERE alert = 'true' INTO BrokeredEndpoint(\"/modules/filter/inputs/alerts\")",
          priority: 0,
        },
        rest: 'FROM /messages/modules/source/outputs/* WHERE NOT IS_DEFINED(alert) INTO BrokeredEndpoint("/modules/filter/inputs/input1")',
      },
    });
    await hub.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    const keyOf = async (moduleId: string) =>
      (await hub.registry.createModule({ deviceId: "edge1", moduleId })).authentication.symmetricKey
        ?.primaryKey;
    const cs = (moduleId: string, key: string | undefined) =>
      `HostName=localhost;DeviceId=edge1;ModuleId=${moduleId};SharedAccessKey=${key};GatewayHostName=localhost:${hub.ports.mqtts}`;
    const source = await moduleFromEnvironment(cs("source", await keyOf("source")), hub.caFile);
    const filterKey = await keyOf("filter");
    await source.open();
    const send = async (from: number, to: number) => {
      for (let n = from; n < to; n++) {
        const m = new Message(`m${n}`);
        if (n % 3 === 0) m.properties.add("alert", "true");
        await source.sendOutputEvent("out", m);
      }
    };
    // The filter module runs once, then is away while the source keeps sending.
    const first = await moduleFromEnvironment(cs("filter", filterKey), hub.caFile);
    const got: string[] = [];
    const listen = (client: typeof first) =>
      client.on("inputMessage", (input: string, m: Message) => {
        got.push(`${input}:${m.data.toString()}`);
        client.complete(m, () => undefined);
      });
    listen(first);
    await first.open();
    await send(0, 3);
    await eventually("live inputs", () => got.length === 3);
    expect(got).toEqual(["alerts:m0", "input1:m1", "input1:m2"]);
    await first.close();
    got.length = 0;
    await send(3, 30);
    const again = await moduleFromEnvironment(cs("filter", filterKey), hub.caFile);
    listen(again);
    await again.open();
    try {
      await eventually("queued inputs", () => got.length === 27);
      const alerts = Array.from({ length: 9 }, (_, i) => `alerts:m${3 + 3 * i}`);
      const rest = Array.from({ length: 27 }, (_, i) => 3 + i)
        .filter((n) => n % 3 !== 0)
        .map((n) => `input1:m${n}`);
      expect(got).toEqual([...alerts, ...rest]);
      await eventually("all acknowledged", async () =>
        (await hub.store.stats()).queues.every((q) => q.count === 0 || q.name === EVENTS_QUEUE),
      );
    } finally {
      await again.close();
      await source.close();
    }
  });
});

describe("twin change notifications", () => {
  it("reach a module by a /twinChangeNotifications route: the reported patch as JSON, not the device's messages", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), {
      routes: {
        twins:
          "FROM /twinChangeNotifications WHERE $connectionDeviceId = 'sensor' INTO BrokeredEndpoint(\"/modules/monitor/inputs/twin\")",
        telemetry: 'FROM /messages/* INTO BrokeredEndpoint("/modules/monitor/inputs/telemetry")',
      },
    });
    await hub.registry.createDevice({ deviceId: "sensor", capabilities: { iotEdge: true } });
    const mod = await hub.registry.createModule({ deviceId: "sensor", moduleId: "monitor" });
    const monitor = await moduleFromEnvironment(
      `HostName=localhost;DeviceId=sensor;ModuleId=monitor;SharedAccessKey=${mod.authentication.symmetricKey?.primaryKey};GatewayHostName=localhost:${hub.ports.mqtts}`,
      hub.caFile,
    );
    const got: Array<{ input: string; body: string; schema?: string; version?: string }> = [];
    monitor.on("inputMessage", (input: string, m: Message) => {
      got.push({
        input,
        body: m.data.toString(),
        schema: m.properties.getValue("iothub-message-schema"),
        version: m.properties.getValue("version"),
      });
      monitor.complete(m, () => undefined);
    });
    await monitor.open();
    const device = await connectedDevice(hub, "sensor");
    try {
      const twin = await device.getTwin();
      await new Promise<void>((resolve, reject) =>
        twin.properties.reported.update({ firmware: "1.2", fan: null }, (err?: Error) =>
          err ? reject(err) : resolve(),
        ),
      );
      await device.sendEvent(new Message("reading"));
      await eventually("notification and message", () => got.length === 2);
      const byInput = Object.fromEntries(got.map((g) => [g.input, g]));
      expect(JSON.parse(byInput.twin?.body ?? "")).toEqual({ firmware: "1.2", fan: null });
      expect(byInput.twin).toMatchObject({ schema: "twinChangeNotification", version: "2" });
      expect(byInput.telemetry).toMatchObject({ body: "reading", schema: undefined });
      expect(Object.keys(byInput).sort()).toEqual(["telemetry", "twin"]);
    } finally {
      await monitor.close();
    }
  });
});
