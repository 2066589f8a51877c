import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import type { EdgeHub, HubConfigInput, ParentConfigInput } from "../../ts/index.js";
import { childOf, edgeIdentity, rootEvents, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { connectedRaw, publishSeq, type RawClient } from "../helpers/mqtt-raw.js";
import { fixedListen } from "../helpers/process.js";
import { call } from "../helpers/service.js";

/** A root on fixed ports (so it can come back), an edge under it with `extra`, and a child `leaf1`. */
async function rootAndEdge(extra: HubConfigInput) {
  const rootDir = await tempDir();
  const listen = await fixedListen();
  const root = await startRoot(rootDir, { listen });
  const parent = await edgeIdentity(root, "edge1");
  const key = await childOf(root, "edge1", "leaf1");
  const edge = await startEdge(await tempDir(), parent, extra);
  await synced(edge);
  await eventually("online", () => edge.upstream?.online === true);
  return { root, edge, key, restartRoot: () => startRoot(rootDir, { listen }) };
}

const leaf = (edge: EdgeHub, key: string): Promise<RawClient> =>
  connectedRaw(edge.ports.mqtts, edge.caCertificate, "leaf1", key);

const publish = (c: RawClient, seq: number, body: Buffer) => publishSeq(c, "leaf1", seq, body);

const seqsAt = async (root: EdgeHub) => (await rootEvents(root)).map((m) => Number(m.properties.seq));

describe("store and forward limits", () => {
  it("never sends a message whose TTL passed while offline", async () => {
    const { root, edge, key, restartRoot } = await rootAndEdge({
      storeAndForwardConfiguration: { timeToLiveSecs: 2 },
    });
    await stopHub(root);
    const c = await leaf(edge, key);
    for (let i = 0; i < 5; i++) expect(await publish(c, i, Buffer.from("old"))).toBe(true);
    await eventually("expired on the edge", async () => (await edge.store.stats()).expired >= 5);
    for (let i = 5; i < 10; i++) expect(await publish(c, i, Buffer.from("new"))).toBe(true);
    const back = await restartRoot();
    await eventually("the fresh ones at the root", async () => (await seqsAt(back)).length >= 5);
    await new Promise((r) => setTimeout(r, 300));
    expect(await seqsAt(back)).toEqual([5, 6, 7, 8, 9]);
    c.end();
  });

  it("with a full store and reject, refuses new messages (the client is disconnected) and loses none it acknowledged", async () => {
    const { root, edge, key, restartRoot } = await rootAndEdge({
      storeAndForwardConfiguration: { storeLimits: { maxSizeBytes: 40_000, whenFull: "reject" } },
    });
    await stopHub(root);
    let c = await leaf(edge, key);
    const acked: number[] = [];
    let seq = 0;
    for (; seq < 200; seq++) {
      if (!(await publish(c, seq, Buffer.alloc(1000, seq & 0xff)))) break;
      acked.push(seq);
    }
    expect(seq).toBeLessThan(200);
    expect(acked.length).toBeGreaterThan(10);
    // Still refused while full; the hub keeps serving.
    c = await leaf(edge, key);
    expect(await publish(c, seq, Buffer.alloc(1000))).toBe(false);
    const back = await restartRoot();
    await eventually(
      "every acknowledged message at the root",
      async () => (await seqsAt(back)).length >= acked.length,
    );
    expect(await seqsAt(back)).toEqual(acked);
    // Drained: room again.
    await eventually("room again", async () => (await edge.store.stats()).bytes < 10_000);
    c = await leaf(edge, key);
    expect(await publish(c, 1000, Buffer.alloc(1000))).toBe(true);
    c.end();
  });

  it("with a full store and drop-oldest, keeps accepting, drops the oldest (counted) and delivers the newest in order", async () => {
    const { root, edge, key, restartRoot } = await rootAndEdge({
      storeAndForwardConfiguration: { storeLimits: { maxSizeBytes: 40_000, whenFull: "drop-oldest" } },
    });
    await stopHub(root);
    const c = await leaf(edge, key);
    for (let i = 0; i < 200; i++) expect(await publish(c, i, Buffer.alloc(1000, i & 0xff))).toBe(true);
    const dropped = (await edge.store.stats()).dropped;
    expect(dropped).toBeGreaterThan(100);
    const back = await restartRoot();
    await eventually("the kept ones at the root", async () => (await seqsAt(back)).includes(199));
    const got = await seqsAt(back);
    // What survives is a contiguous run of the newest, in order.
    expect(got).toEqual(Array.from({ length: got.length }, (_, i) => 200 - got.length + i));
    expect(got.length).toBe(200 - dropped);
    c.end();
  });

  it("live-first: after the parent returns, new messages go ahead of the backlog, each in its order", async () => {
    const { root, edge, key, restartRoot } = await rootAndEdge({});
    await stopHub(root);
    await stopHub(edge);
    // The same edge, restarted with live-first and a drain slow enough to overtake.
    const { config } = edge;
    const parent: ParentConfigInput = {
      ...(config.parent as ParentConfigInput),
      order: "live-first",
      maxMessagesPerSec: 300,
    };
    const slow = await startEdge(config.dataDir, parent);
    const c = await leaf(slow, key);
    for (let i = 0; i < 300; i++) expect(await publish(c, i, Buffer.from("backlog"))).toBe(true);
    const back = await restartRoot();
    await eventually("online", () => slow.upstream?.online === true);
    for (let i = 300; i < 310; i++) expect(await publish(c, i, Buffer.from("live"))).toBe(true);
    await eventually("all at the root", async () => new Set(await seqsAt(back)).size >= 310);
    const got = await seqsAt(back);
    const firsts = got.filter((s, i) => got.indexOf(s) === i);
    const live = firsts.filter((s) => s >= 300);
    const backlog = firsts.filter((s) => s < 300);
    expect(live).toEqual(Array.from({ length: 10 }, (_, i) => 300 + i));
    expect(backlog).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(firsts.indexOf(309)).toBeLessThan(firsts.indexOf(299));
    c.end();
  });

  it("drains routes of a higher priority first: urgent messages stored after a backlog reach the parent before it", async () => {
    const { root, edge, key, restartRoot } = await rootAndEdge({});
    await stopHub(root);
    await stopHub(edge);
    const parent: ParentConfigInput = {
      ...(edge.config.parent as ParentConfigInput),
      maxMessagesPerSec: 300,
    };
    const prioritized = await startEdge(edge.config.dataDir, parent, {
      routes: {
        urgent: { route: "FROM /messages/* WHERE urgent = 'yes' INTO $upstream", priority: 0 },
        // (A missing property makes `urgent = 'yes'` undefined, and NOT keeps it so: IS_DEFINED says it.)
        normal: "FROM /messages/* WHERE NOT IS_DEFINED(urgent) INTO $upstream",
      },
    });
    const c = await leaf(prioritized, key);
    for (let i = 0; i < 200; i++) expect(await publish(c, i, Buffer.from("normal"))).toBe(true);
    for (let i = 200; i < 210; i++)
      expect(await publishSeq(c, "leaf1", i, Buffer.from("urgent"), "&urgent=yes")).toBe(true);
    const back = await restartRoot();
    await eventually("all at the root", async () => new Set(await seqsAt(back)).size >= 210);
    const got = await seqsAt(back);
    const firsts = got.filter((s, i) => got.indexOf(s) === i);
    // The urgent ones first, in their order; then the backlog, in its order.
    expect(firsts).toEqual([
      ...Array.from({ length: 10 }, (_, i) => 200 + i),
      ...Array.from({ length: 200 }, (_, i) => i),
    ]);
    c.end();
  });

  it("dead-letters the messages of a child the parent refuses for good, with the reason, and keeps forwarding the others", async () => {
    const { root, edge, key } = await rootAndEdge({});
    const other = await childOf(root, "edge1", "leaf2");
    expect(await edge.upstream?.scope?.sync()).toBe(true);
    // The parent takes leaf1 out of the edge's scope; the edge has not synced since.
    await root.registry.updateDevice({ deviceId: "leaf1", deviceScope: "" });
    const c = await leaf(edge, key);
    // In one write, so all three are stored before the parent's first refusal makes the edge
    // sync its scope and close leaf1.
    c.sendBytes(
      Buffer.concat(
        [0, 1, 2].map((i) =>
          mqtt.generate({
            cmd: "publish",
            topic: `devices/leaf1/messages/events/seq=${i}`,
            payload: Buffer.from(`m${i}`),
            qos: 1,
            messageId: i + 1,
            retain: false,
            dup: false,
          }),
        ),
      ),
    );
    for (let i = 0; i < 3; i++) expect(await c.next()).toMatchObject({ cmd: "puback", messageId: i + 1 });
    const c2 = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leaf2", other);
    expect(await publishSeq(c2, "leaf2", 0)).toBe(true);
    await eventually("leaf2's message at the root", async () =>
      (await rootEvents(root)).some((m) => m.properties["$.cdid"] === "leaf2"),
    );
    await eventually("dead-lettered", () => (edge.upstream?.forwarder.stats.deadLettered ?? 0) >= 3);
    const dl = await edge.store.read("$deadletter");
    expect(dl.map((m) => m.body.toString())).toEqual(["m0", "m1", "m2"]);
    expect(dl[0]?.properties["$.dlr"]).toMatch(/refused the login of leaf1 \(CONNACK 5\)/);
    expect((await rootEvents(root)).some((m) => m.properties["$.cdid"] === "leaf1")).toBe(false);
    // Inspectable through the service API, with the reason, and counted in the status.
    const page = (await call(edge, "GET", "/edge/deadletter?from=0&limit=10")).body as {
      messages: { deviceId: string; body: string; reason: string }[];
    };
    expect(page.messages.map((m) => [m.deviceId, Buffer.from(m.body, "base64").toString()])).toEqual([
      ["leaf1", "m0"],
      ["leaf1", "m1"],
      ["leaf1", "m2"],
    ]);
    expect(page.messages[0]?.reason).toMatch(/CONNACK 5/);
    const status = (await call(edge, "GET", "/edge/status")).body;
    expect(status).toMatchObject({
      role: "edge",
      online: true,
      forwarder: { deadLettered: 3 },
      deadLetterQueue: { count: 3 },
    });
    await eventually(
      "checkpointed past them",
      async () => (await edge.store.stats()).queues.find((q) => q.name === "$upstream")?.count === 0,
    );
    c.end();
    c2.end();
  });
});
