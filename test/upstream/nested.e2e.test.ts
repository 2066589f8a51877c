import { SharedAccessSignature } from "azure-iot-common";
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import type { EdgeHub, HubConfigInput } from "../../ts/index.js";
import { edgeIdentity, rootEvents, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { connectedRaw, deviceConnect, publishSeq, type RawClient, rawClient } from "../helpers/mqtt-raw.js";
import { fixedListen } from "../helpers/process.js";

async function publish(c: RawClient, seq: number): Promise<void> {
  expect(await publishSeq(c, "leaf", seq)).toBe(true);
}

const leafSeqs = async (root: EdgeHub) =>
  (await rootEvents(root))
    .filter((m) => m.properties["$.cdid"] === "leaf")
    .map((m) => Number(m.properties.seq));

/** root <- edge1 <- edge2, and `leaf` a child of edge2; both edges have synced their scope. */
async function nested(edge1Extra: HubConfigInput = {}) {
  const root = await startRoot(await tempDir(), { allowNesting: true });
  const edge1Parent = await edgeIdentity(root, "edge1");
  const edge1Scope = root.registry.getDevice("edge1")?.deviceScope;
  const e2 = await root.registry.createDevice({
    deviceId: "edge2",
    capabilities: { iotEdge: true },
    parentScopes: [edge1Scope ?? ""],
  });
  const leaf = await root.registry.createDevice({ deviceId: "leaf", deviceScope: e2.deviceScope });
  const edge1Dir = await tempDir();
  const edge1Listen = await fixedListen();
  const filter = await root.registry.createModule({ deviceId: "edge1", moduleId: "filter" });
  const edge1 = await startEdge(edge1Dir, edge1Parent, { listen: edge1Listen, ...edge1Extra });
  await synced(edge1);
  const edge2 = await startEdge(await tempDir(), {
    hostname: "127.0.0.1",
    hubHostname: "localhost",
    port: edge1Listen.mqtts,
    httpsPort: edge1Listen.https,
    deviceId: "edge2",
    sharedAccessKey: e2.authentication.symmetricKey?.primaryKey ?? "",
    caFile: edge1.caFile,
    maxBackoffMs: 300,
  });
  await synced(edge2);
  return { root, edge1, edge1Dir, edge1Parent, edge1Listen, edge2, leaf, filter };
}

describe("nested edge hubs", () => {
  it("root <- edge1 <- edge2 <- leaf: edge2 syncs its scope from edge1, and messages climb both hops as the leaf, through an outage of the middle hub", async () => {
    const n = await nested();
    const { root, edge1Dir, edge1Parent, edge1Listen, edge2, leaf } = n;
    let edge1 = n.edge1;
    // edge2 gets its own subtree only.
    expect(edge2.registry.getDevice("edge1")).toBeUndefined();

    const c = await connectedRaw(
      edge2.ports.mqtts,
      edge2.caCertificate,
      "leaf",
      leaf.authentication.symmetricKey?.primaryKey ?? "",
    );
    for (let i = 0; i < 10; i++) await publish(c, i);
    await eventually("10 at the root", async () => (await leafSeqs(root)).length >= 10);

    await stopHub(edge1);
    for (let i = 10; i < 20; i++) await publish(c, i);
    edge1 = await startEdge(edge1Dir, edge1Parent, { listen: edge1Listen });
    await eventually("20 at the root", async () => new Set(await leafSeqs(root)).size >= 20);
    const got = await leafSeqs(root);
    expect(got.filter((s, i) => got.indexOf(s) === i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    c.end();
  });

  it("a leaf reusing one message id through edge2 and edge1: every message reaches the root in order, each hop sending its own forwarder id", async () => {
    const { root, edge2, leaf } = await nested();
    const c = await connectedRaw(
      edge2.ports.mqtts,
      edge2.caCertificate,
      "leaf",
      leaf.authentication.symmetricKey?.primaryKey ?? "",
    );
    for (let i = 0; i < 20; i++) expect(await publishSeq(c, "leaf", i, undefined, "&%24.mid=42")).toBe(true);
    await eventually("20 at the root", async () => (await leafSeqs(root)).length >= 20);
    expect(await leafSeqs(root)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    const atRoot = (await rootEvents(root)).filter((m) => m.properties["$.cdid"] === "leaf");
    expect(atRoot.every((m) => m.properties["$.mid"] === "42")).toBe(true);
    // edge1 sends its own forwarder id upward, not edge2's (which starts `edge2/`).
    expect(atRoot.every((m) => m.properties["$.fid"]?.startsWith("edge1/"))).toBe(true);
    c.end();
  });

  it("a module on the middle hub gets a forwarded message without the child hub's forwarder id", async () => {
    const { edge1, edge2, leaf, filter } = await nested({
      routes: { toFilter: 'FROM /messages/* INTO BrokeredEndpoint("/modules/filter/inputs/input1")' },
    });
    // The module, raw: it sees the property bag exactly as the hub sends it.
    const mod = await rawClient(edge1.ports.mqtts, edge1.caCertificate);
    const key = filter.authentication.symmetricKey?.primaryKey ?? "";
    const token = SharedAccessSignature.create(
      "localhost/devices/edge1/modules/filter",
      "",
      key,
      Math.floor(Date.now() / 1000) + 600,
    );
    mod.send(
      deviceConnect("edge1", key, {
        clientId: "edge1/filter",
        clean: true,
        username: "localhost/edge1/filter/?api-version=2021-04-12",
        password: Buffer.from(token.toString()),
      }),
    );
    expect(await mod.next()).toMatchObject({ cmd: "connack", returnCode: 0 });
    mod.send({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "devices/edge1/modules/filter/inputs/#", qos: 1 }],
    } as Packet);
    expect(await mod.next()).toMatchObject({ cmd: "suback" });

    const c = await connectedRaw(
      edge2.ports.mqtts,
      edge2.caCertificate,
      "leaf",
      leaf.authentication.symmetricKey?.primaryKey ?? "",
    );
    expect(await publishSeq(c, "leaf", 0, undefined, "&%24.mid=42")).toBe(true);
    const got = await mod.next(10_000);
    if (got === "closed" || got.cmd !== "publish")
      throw new Error(`expected a PUBLISH, got ${JSON.stringify(got)}`);
    expect(got.topic).toMatch(/^devices\/edge1\/modules\/filter\/inputs\/input1\/.*seq=0/);
    expect(got.topic).toContain("%24.mid=42");
    expect(got.topic).not.toContain("fid");
    c.end();
    mod.end();
  });
});
