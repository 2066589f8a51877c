import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import type { HubConfigInput } from "../../ts/index.js";
import { selfSigned } from "../helpers/certs.js";
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
import { BOTH_HEADS, stopHub } from "../helpers/hub.js";
import { connectedRaw, deviceConnect, publishSeq, rawClient } from "../helpers/mqtt-raw.js";
import { fixedListen } from "../helpers/process.js";

describe("edge hub forwarding to a root hub", () => {
  it("syncs its scope, authenticates a child on it, and forwards the child's messages in order as the child", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    expect(edge.registry.getModule("edge1", "$edgeHub")).toBeDefined();
    const leaf = await childClient(gatewayOf(edge), "leaf1", key);
    await leaf.open();
    for (let i = 0; i < 20; i++) {
      const m = new Message(JSON.stringify({ i }));
      m.properties.add("seq", String(i));
      await leaf.sendEvent(m);
    }
    await eventually("20 at the root", async () => (await rootEvents(root)).length >= 20);
    const got = await rootEvents(root);
    expect(got.map((m) => m.properties.seq)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(got.every((m) => m.properties["$.cdid"] === "leaf1")).toBe(true);
    expect(got.map((m) => JSON.parse(m.body.toString()).i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await eventually(
      "checkpointed",
      async () => (await edge.store.stats()).queues.find((q) => q.name === "$upstream")?.count === 0,
    );
  });

  it("disconnects and refuses a child disabled or removed upstream once the scope is synced again", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const keyA = await childOf(root, "edge1", "leafA");
    const keyB = await childOf(root, "edge1", "leafB");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const a = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leafA", keyA);
    const b = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leafB", keyB);

    await root.registry.updateDevice({ deviceId: "leafA", status: "disabled" });
    await root.registry.deleteDevice("leafB");
    expect(await edge.upstream?.scope?.sync()).toBe(true);
    await a.closed;
    await b.closed;
    for (const [id, key] of [
      ["leafA", keyA],
      ["leafB", keyB],
    ] as const) {
      const again = await rawClient(edge.ports.mqtts, edge.caCertificate);
      again.send(deviceConnect(id, key, { clean: true }));
      expect(await again.next(), id).toMatchObject({ cmd: "connack", returnCode: 5 });
    }
  });

  it("offline, refuses an identity it does not know at once, and lets known ones in", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const stranger = await root.registry.createDevice({ deviceId: "stranger" });
    await stopHub(root);
    const s = await rawClient(edge.ports.mqtts, edge.caCertificate);
    s.send(
      deviceConnect("stranger", stranger.authentication.symmetricKey?.primaryKey ?? "", { clean: true }),
    );
    expect(await s.next()).toMatchObject({ cmd: "connack", returnCode: 5 });
    const k = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leaf1", key);
    k.end();
  });

  it("logs in to its parent with an X.509 certificate, for the scope sync and for its children's links", async () => {
    const root = await startRoot(await tempDir());
    const cert = await selfSigned("edgex");
    await root.registry.createDevice({
      deviceId: "edgex",
      capabilities: { iotEdge: true },
      authentication: {
        type: "selfSigned",
        x509Thumbprint: { primaryThumbprint: cert.thumbprint, secondaryThumbprint: null },
      },
    });
    const key = await childOf(root, "edgex", "leafx");
    const dir = await tempDir();
    await writeFile(join(dir, "edge.pem"), cert.cert);
    await writeFile(join(dir, "edge-key.pem"), cert.key, { mode: 0o600 });
    const edge = await startEdge(join(dir, "data"), {
      hostname: "localhost",
      port: root.ports.mqtts,
      httpsPort: root.ports.https,
      deviceId: "edgex",
      certFile: join(dir, "edge.pem"),
      keyFile: join(dir, "edge-key.pem"),
      caFile: root.caFile,
      maxBackoffMs: 300,
    });
    await synced(edge);
    // The certificate fetched the `$edgeHub` keys (the identity service's call); they sign the logins.
    expect(edge.upstream?.edgeHubModule?.keys?.primaryKey).toBe(
      root.registry.getModule("edgex", "$edgeHub")?.authentication.symmetricKey?.primaryKey,
    );
    const leaf = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leafx", key);
    expect(await publishSeq(leaf, "leafx", 0, Buffer.from("by cert"))).toBe(true);
    await eventually("at the root", async () =>
      (await rootEvents(root)).some((m) => m.body.toString() === "by cert"),
    );
    expect((await rootEvents(root))[0]?.properties["$.cdid"]).toBe("leafx");
    leaf.end();
  });

  it("relays direct methods from the parent to a child connected to the edge", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "lamp");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const lamp = await childClient(gatewayOf(edge), "lamp", key);
    lamp.onDeviceMethod("blink", (req, res) => res.send(200, { times: req.payload }, () => undefined));
    await lamp.open();
    let answer = await root.methods.invoke("lamp", { methodName: "blink", payload: 3 });
    for (let i = 0; i < 100 && answer.status === 404; i++) {
      // The edge's link for the lamp subscribes once the lamp listens: a moment after it connects.
      await new Promise((r) => setTimeout(r, 50));
      answer = await root.methods.invoke("lamp", { methodName: "blink", payload: 3 });
    }
    expect(answer).toEqual({ status: 200, payload: { times: 3 } });
    expect(
      await root.methods.invoke("lamp", { methodName: "nope", payload: null, responseTimeoutInSeconds: 5 }),
    ).toMatchObject({
      status: 504,
    });
  });

  it("takes an AMQP child's messages while the parent is down, acknowledged by the edge alone; everything reaches the parent in order when it returns", async () => {
    const { root, edge, send, parentReturns } = await amqpChildSite(BOTH_HEADS.listen);
    await send(0, 5);
    await eventually("5 at the root", async () => (await rootEvents(root)).length >= 5);

    // The parent goes away: the edge stores what the child sends and accepts it.
    await stopHub(root);
    await send(5, 15);
    const backlog = (await edge.store.stats()).queues.find((q) => q.name === "$upstream");
    expect(backlog?.count).toBe(10);
    await parentReturns(15);
  }, 60_000);

  it("keeps an AMQP child sending across an edge restart while the parent is down; the parent gets everything in order when it returns", async () => {
    // The edge comes back on the same ports, as a gateway does: the child dials the same one.
    const edgeListen = await fixedListen(true);
    const site = await amqpChildSite(edgeListen);
    await site.send(0, 5);
    await eventually("5 at the root", async () => (await rootEvents(site.root)).length >= 5);
    await stopHub(site.root);
    await site.send(5, 10);
    // The edge restarts with its parent still away: it authenticates the child from its cache.
    await stopHub(site.edge);
    const edge = await startEdge(site.edgeDir, site.parent, { listen: edgeListen });
    // The SDK's transport was cut; its next send connects again, to the same gateway.
    await site.send(10, 20);
    expect(edge.connectedClients).toContain("leaf1");
    const backlog = (await edge.store.stats()).queues.find((q) => q.name === "$upstream");
    expect(backlog?.count).toBe(15);
    await site.parentReturns(20);
  }, 90_000);
});

/**
 * A root on fixed ports (so it can come back), an edge under it listening at `edgeListen`,
 * and its child `leaf1` over AMQP (opened): `send` sends messages `seq` from..to-1 in order;
 * `parentReturns` restarts the root and expects all `n` there, in order, from leaf1.
 */
async function amqpChildSite(edgeListen: HubConfigInput["listen"]) {
  const rootDir = await tempDir();
  const rootListen = await fixedListen();
  const root = await startRoot(rootDir, { listen: rootListen });
  const parent = await edgeIdentity(root, "edge1");
  const key = await childOf(root, "edge1", "leaf1");
  const edgeDir = await tempDir();
  const edge = await startEdge(edgeDir, parent, { listen: edgeListen });
  await synced(edge);
  const leaf = await childClient(gatewayOf(edge), "leaf1", key, "amqp");
  await leaf.open();
  const send = async (from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const m = new Message(JSON.stringify({ i }));
      m.properties.add("seq", String(i));
      await leaf.sendEvent(m);
    }
  };
  const parentReturns = async (n: number) => {
    const back = await startRoot(rootDir, { listen: rootListen });
    await eventually(`${n} at the root`, async () => (await rootEvents(back)).length >= n);
    const got = await rootEvents(back);
    expect(got.map((m) => m.properties.seq)).toEqual(Array.from({ length: n }, (_, i) => String(i)));
    expect(got.every((m) => m.properties["$.cdid"] === "leaf1")).toBe(true);
  };
  return { root, parent, edge, edgeDir, send, parentReturns };
}
