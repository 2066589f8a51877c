/**
 * Cloud-to-device messages sent at the root reach children of an edge (issue 12, gap 8):
 * stored at the edge first, completed at the root only after the child completed its copy,
 * in arrival order, once, across outages and a killed edge. Real root, real edge (in
 * process or as its own process), the official device SDK or raw MQTT children, and a
 * strict scripted parent where the order of PUBACKs is the point.
 */
import type { Client, Message } from "azure-iot-device";
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  startEdge,
  startRoot,
  synced,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { recordingLogger } from "../helpers/hub.js";
import { connectedRaw, type RawClient } from "../helpers/mqtt-raw.js";
import { hubProcess } from "../helpers/process.js";
import { BlackholeProxy } from "../helpers/proxy.js";
import type { RawParent } from "../helpers/raw-parent.js";
import { scriptedSite } from "../helpers/scripted-site.js";
import { call } from "../helpers/service.js";
import { site as processSite } from "../helpers/site.js";

const C2D = (d: string) => `devices/${d}/messages/devicebound/#`;

/** Sends a C2D message through the root's service API (as the service SDK's HTTP form). */
async function sendC2D(root: EdgeHub, deviceId: string, body: string, headers: Record<string, string> = {}) {
  const r = await call(root, "POST", `/devices/${deviceId}/messages/deviceBound`, Buffer.from(body), headers);
  expect(r.status).toBe(204);
}

/** Messages of `queue` not acknowledged yet. */
async function queued(hub: EdgeHub, queue: string): Promise<number> {
  return (await hub.store.stats()).queues.find((q) => q.name === queue)?.count ?? 0;
}

/** A root, an edge under it (through a cuttable relay), children `leafs` registered and synced. */
async function inProcessSite(leafs: string[]) {
  const root = await startRoot(await tempDir());
  const proxy = await BlackholeProxy.start(root.ports.mqtts);
  const identity = await edgeIdentity(root, "edge1", proxy.port);
  const keys = new Map<string, string>();
  for (const id of leafs) keys.set(id, await childOf(root, "edge1", id));
  const edge = await startEdge(await tempDir(), { ...identity, keepaliveSecs: 2, ackTimeoutMs: 2000 });
  await synced(edge);
  return { root, edge, proxy, keys };
}

/** An SDK child of the edge that completes every C2D message it gets; `got` in arrival order. */
async function completingChild(edge: EdgeHub, deviceId: string, key: string) {
  const client: Client = await childClient(gatewayOf(edge), deviceId, key);
  await client.open();
  const got: Message[] = [];
  client.on("message", (m: Message) => {
    got.push(m);
    client.complete(m, () => undefined);
  });
  return { client, got };
}

describe("C2D relay through an edge", () => {
  it("a C2D message sent at the root reaches the SDK child of the edge with its properties; the root's copy goes only once the child completed", async () => {
    const { root, edge, keys } = await inProcessSite(["leaf1"]);
    const { got } = await completingChild(edge, "leaf1", keys.get("leaf1") ?? "");
    await sendC2D(root, "leaf1", "hello", {
      "iothub-messageid": "mid-1",
      "iothub-correlationid": "cor-1",
      "iothub-app-color": "red",
      "content-type": "text/plain",
    });
    await eventually("the child got it", () => got.length === 1);
    const m = got[0] as Message;
    expect(m.data.toString()).toBe("hello");
    expect(m.messageId).toBe("mid-1");
    expect(m.correlationId).toBe("cor-1");
    expect(m.properties.getValue("color")).toBe("red");
    // Internal relay bookkeeping never reaches the child.
    expect(m.properties.propertyList.map((p) => p.key)).not.toContain("$.fid");
    await eventually("acknowledged at the root", async () => (await queued(root, "$c2d/leaf1")) === 0);
    await eventually("and at the edge", async () => (await queued(edge, "$c2d/leaf1")) === 0);

    // A second one, after: one each, in order.
    await sendC2D(root, "leaf1", "again", { "iothub-messageid": "mid-2" });
    await eventually("the second", () => got.length === 2);
    expect(got.map((g) => g.data.toString())).toEqual(["hello", "again"]);
  }, 60_000);

  it("a child deleted at the root is forgotten by the edge's relay once the scope sync removes it; the other child still gets its messages", async () => {
    const { root, edge, keys } = await inProcessSite(["leaf1", "leaf2"]);
    const one = await completingChild(edge, "leaf1", keys.get("leaf1") ?? "");
    const two = await completingChild(edge, "leaf2", keys.get("leaf2") ?? "");
    await sendC2D(root, "leaf1", "to-1", { "iothub-messageid": "a" });
    await sendC2D(root, "leaf2", "to-2", { "iothub-messageid": "b" });
    await eventually("both delivered", () => one.got.length === 1 && two.got.length === 1);
    const relay = edge.upstream?.c2dRelay;
    expect(relay?.devicesHeld).toBe(2);

    expect((await call(root, "DELETE", "/devices/leaf1")).status).toBe(204);
    expect(await edge.upstream?.scope?.sync()).toBe(true);
    expect(edge.registry.getDevice("leaf1")).toBeUndefined();
    // Nothing of leaf1 is held any more: the relay's maps follow the registry.
    await eventually("leaf1 forgotten", () => relay?.devicesHeld === 1);

    await sendC2D(root, "leaf2", "to-2-again", { "iothub-messageid": "c" });
    await eventually("leaf2 still served", () => two.got.length === 2);
  }, 60_000);

  it("sent while the edge's uplink is cut: delivered to the listening child once the link returns", async () => {
    const { root, edge, proxy, keys } = await inProcessSite(["leaf1"]);
    const { got } = await completingChild(edge, "leaf1", keys.get("leaf1") ?? "");
    await sendC2D(root, "leaf1", "before", { "iothub-messageid": "b" });
    await eventually("the first arrives", () => got.length === 1);
    // Its completion travels child -> edge -> root; cut only once the root has it, or the
    // root still holds it (and sends it again after the link returns, deduplicated there).
    await eventually(
      "the first acknowledged at the root",
      async () => (await queued(root, "$c2d/leaf1")) === 0,
    );

    proxy.cut();
    await eventually("the edge is offline", () => edge.upstream?.online === false);
    await sendC2D(root, "leaf1", "while-away", { "iothub-messageid": "w" });
    expect(await queued(root, "$c2d/leaf1")).toBe(1);
    proxy.restore();
    await eventually("delivered after the link returned", () => got.length === 2);
    expect(got.map((g) => g.data.toString())).toEqual(["before", "while-away"]);
    await eventually("acknowledged at the root", async () => (await queued(root, "$c2d/leaf1")) === 0);
  }, 60_000);

  it("a child connected but not listening: the edge does not subscribe for it and the root keeps the message; once it listens, delivered", async () => {
    const { root, edge, keys } = await inProcessSite(["leaf1"]);
    await sendC2D(root, "leaf1", "kept", { "iothub-messageid": "k" });
    // Connected, sending telemetry (its link to the root is up), not subscribed to C2D.
    const raw = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leaf1", keys.get("leaf1") ?? "");
    raw.send({
      cmd: "publish",
      topic: "devices/leaf1/messages/events/",
      payload: Buffer.from("t"),
      qos: 1,
      messageId: 1,
    } as Packet);
    expect(await raw.next()).toMatchObject({ cmd: "puback" });
    await eventually("its telemetry at the root", async () => (await queued(root, "$events")) >= 1);
    // The root took the telemetry on leaf1's link, which it would have sent C2D on: none sent.
    expect(await queued(root, "$c2d/leaf1")).toBe(1);
    expect(await queued(edge, "$c2d/leaf1")).toBe(0);
    raw.end();

    const { got } = await completingChild(edge, "leaf1", keys.get("leaf1") ?? "");
    await eventually("delivered once it listens", () => got.length === 1);
    expect(got[0]?.data.toString()).toBe("kept");
    await eventually("acknowledged at the root", async () => (await queued(root, "$c2d/leaf1")) === 0);
  }, 60_000);

  it("edge killed after storing, before the child completed: after a restart the child gets it exactly once and the root's copy is acknowledged", async () => {
    const s = await processSite({}, false, { devices: ["leaf1"] });
    const key = s.keys.get("leaf1") ?? "";
    // A raw child that takes C2D messages and does not complete them.
    const first = await c2dChild(s.gateway.port, s.gateway.ca, "leaf1", key);
    await sendC2D(s.root, "leaf1", "once", { "iothub-messageid": "once-1" });
    const p = await first.nextPublish();
    expect(p.payload.toString()).toBe("once");
    // Stored at the edge (it was delivered from there), not completed: the root still holds it.
    expect(await queued(s.root, "$c2d/leaf1")).toBe(1);

    await s.edge.stop("SIGKILL");
    first.end();
    const edge = await hubProcess(s.edgeDir, s.config);
    await edge.waitFor(/"scope-synced"/);
    const second = await c2dChild(s.gateway.port, s.gateway.ca, "leaf1", key);
    const again = await second.nextPublish();
    expect(again.payload.toString()).toBe("once");
    second.puback(again.messageId);
    await eventually("the root's copy acknowledged", async () => (await queued(s.root, "$c2d/leaf1")) === 0);
    // A later message: had the root's resend been stored again, it would come before this one.
    await sendC2D(s.root, "leaf1", "marker", { "iothub-messageid": "marker-1" });
    const next = await second.nextPublish();
    expect(next.payload.toString()).toBe("marker");
    second.puback(next.messageId);
  }, 90_000);
});

describe("the root as the other side of a C2D relay", () => {
  it("sends again on the next connection what was not PUBACKed, marked DUP; a first delivery is not", async () => {
    const root = await startRoot(await tempDir());
    const key = (await root.registry.createDevice({ deviceId: "valve" })).authentication.symmetricKey
      ?.primaryKey;
    await sendC2D(root, "valve", "one", { "iothub-messageid": "v1" });
    const first = await c2dChild(root.ports.mqtts, root.caCertificate, "valve", key ?? "");
    const p = await first.nextPublish();
    expect([p.payload.toString(), p.dup]).toEqual(["one", false]);
    first.end();
    const second = await c2dChild(root.ports.mqtts, root.caCertificate, "valve", key ?? "");
    const again = await second.nextPublish();
    expect([again.payload.toString(), again.dup]).toEqual(["one", true]);
    second.puback(again.messageId);
    await sendC2D(root, "valve", "two", { "iothub-messageid": "v2" });
    const next = await second.nextPublish();
    expect([next.payload.toString(), next.dup]).toEqual(["two", false]);
  }, 30_000);
});

describe("C2D relay against a strict scripted parent", () => {
  async function strictSite(leafs: string[]) {
    const log = recordingLogger();
    return { ...(await scriptedSite(leafs, log)), log };
  }

  /** Resolves once leaf1's link subscribed its C2D at QoS 1. */
  const c2dSubscribed = (parent: RawParent) =>
    eventually("the link subscribed C2D", () =>
      parent.received.some((r) => r.clientId === "leaf1" && r.topics.includes(`${C2D("leaf1")}@1`)),
    );

  /** The C2D PUBLISH the parent sends: packet id `id`, bag as given. */
  const c2d = (id: number, bag: string, body: string, dup = false): Packet =>
    ({
      cmd: "publish",
      topic: `devices/leaf1/messages/devicebound/${bag}`,
      payload: Buffer.from(body),
      qos: 1,
      messageId: id,
      retain: false,
      dup,
    }) as Packet;

  const pubacksFrom = (parent: RawParent, clientId: string) =>
    parent.received.filter((r) => r.cmd === "puback" && r.clientId === clientId).map((r) => r.messageId);

  it("50 messages: the child's link subscribes at QoS 1 with a kept session; PUBACKs go up in arrival order, none before the child's own", async () => {
    const { edge, parent, keys } = await strictSite(["leaf1"]);
    const child = await c2dChild(edge.ports.mqtts, edge.caCertificate, "leaf1", keys.get("leaf1") ?? "");
    await c2dSubscribed(parent);
    expect(parent.connects.filter((c) => c.clientId === "leaf1").every((c) => !c.clean)).toBe(true);

    for (let i = 1; i <= 50; i++) parent.sendTo("leaf1", c2d(i, `%24.mid=m${i}&seq=${i}`, `b${i}`));
    const local: Array<{ body: string; messageId: number }> = [];
    for (let i = 0; i < 50; i++) {
      const p = await child.nextPublish();
      local.push({ body: p.payload.toString(), messageId: p.messageId });
    }
    expect(local.map((l) => l.body)).toEqual(Array.from({ length: 50 }, (_, i) => `b${i + 1}`));
    expect(pubacksFrom(parent, "leaf1")).toEqual([]);

    // The child completes the later 40 first: nothing may go up (the first ten hold them back).
    for (const l of local.slice(10)) child.puback(l.messageId);
    await child.ping();
    // Its first ten complete in reverse: the edge sends all fifty, in arrival order.
    const completedLocally = new Set(local.slice(10).map((l) => l.body));
    for (const l of local.slice(0, 10).reverse()) {
      expect(pubacksFrom(parent, "leaf1")).toEqual([]);
      completedLocally.add(l.body);
      child.puback(l.messageId);
    }
    await eventually("fifty PUBACKs at the parent", () => pubacksFrom(parent, "leaf1").length === 50);
    expect(pubacksFrom(parent, "leaf1")).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(completedLocally.size).toBe(50);
  }, 60_000);

  it("without $.mid: an alike message is a new one, a resend marked DUP is matched to the stored copy and completed with it", async () => {
    const { edge, parent, keys } = await strictSite(["leaf1"]);
    const child = await c2dChild(edge.ports.mqtts, edge.caCertificate, "leaf1", keys.get("leaf1") ?? "");
    await c2dSubscribed(parent);
    parent.sendTo("leaf1", c2d(1, "a=1", "alike"));
    parent.sendTo("leaf1", c2d(2, "a=1", "alike"));
    parent.sendTo("leaf1", c2d(3, "a=1", "alike", true));
    parent.sendTo("leaf1", c2d(4, "%24.mid=end", "end"));
    const got = [await child.nextPublish(), await child.nextPublish(), await child.nextPublish()];
    expect(got.map((g) => g.payload.toString())).toEqual(["alike", "alike", "end"]);
    for (const g of got) child.puback(g.messageId);
    await eventually("four PUBACKs", () => pubacksFrom(parent, "leaf1").length === 4);
    expect(pubacksFrom(parent, "leaf1")).toEqual([1, 2, 3, 4]);
  }, 60_000);

  it("hostile C2D from the parent (oversized bag, bad property names, unreadable or past expiry) is refused and logged; the link stays; the good ones arrive, with their TTL", async () => {
    const { edge, parent, log, keys } = await strictSite(["leaf1"]);
    const child = await c2dChild(edge.ports.mqtts, edge.caCertificate, "leaf1", keys.get("leaf1") ?? "");
    await c2dSubscribed(parent);
    const connects = parent.connects.length;
    const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
    parent.sendTo("leaf1", c2d(1, `big=${"x".repeat(20_000)}`, "oversized"));
    parent.sendTo("leaf1", c2d(2, "bad%20name=1", "bad-name"));
    parent.sendTo("leaf1", c2d(3, "%24.exp=soon", "bad-exp"));
    parent.sendTo("leaf1", c2d(4, `%24.exp=${encodeURIComponent(new Date(1000).toISOString())}`, "expired"));
    parent.sendTo("leaf1", c2d(5, "%24.fid=forged&%24.in=input9&%24.mid=g1&ok=1", "good"));
    parent.sendTo("leaf1", c2d(6, `%24.mid=g2&%24.exp=${encodeURIComponent(inAnHour)}`, "good-ttl"));
    parent.sendTo("leaf1", c2d(7, "%24.mid=g1", "good"));

    const a = await child.nextPublish();
    const b = await child.nextPublish();
    expect([a.payload.toString(), b.payload.toString()]).toEqual(["good", "good-ttl"]);
    // The parent's own `$`-keys that are the hubs' are not taken; its application property is.
    expect(a.topic).toContain("ok=1");
    expect(a.topic).not.toContain("fid");
    expect(a.topic).not.toContain("input9");
    const stored = await edge.store.read("$c2d/leaf1", { from: 0 });
    const ttl = stored.find((m) => m.body.toString() === "good-ttl");
    expect(Math.abs((ttl?.expiresAt ?? 0) - Date.parse(inAnHour))).toBeLessThan(2000);
    // The refused and the expired are completed at once, so they hold nothing back; the
    // resend of g1 (7) waits with the first copy (5), completed by the child.
    await eventually("the four refused completed", () => pubacksFrom(parent, "leaf1").length >= 4);
    expect(pubacksFrom(parent, "leaf1")).toEqual([1, 2, 3, 4]);
    child.puback(a.messageId);
    child.puback(b.messageId);
    await eventually("all seven completed", () => pubacksFrom(parent, "leaf1").length === 7);
    expect(pubacksFrom(parent, "leaf1")).toEqual([1, 2, 3, 4, 5, 6, 7]);
    const refused = log.events.filter((e) => e.event === "c2d-relay-refused").map((e) => e.fields.reason);
    expect(refused).toHaveLength(3);
    expect(refused.join("\n")).toMatch(/property bag over/);
    expect(refused.join("\n")).toMatch(/property name/);
    expect(refused.join("\n")).toMatch(/\$\.exp/);
    expect(parent.connects.length).toBe(connects);
  }, 60_000);
});

/** A raw child subscribed to its C2D messages, completing them only when told. */
async function c2dChild(port: number, ca: string, deviceId: string, key: string) {
  const c: RawClient = await connectedRaw(port, ca, deviceId, key);
  c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: C2D(deviceId), qos: 1 }] } as Packet);
  const publishes: Array<{ topic: string; payload: Buffer; messageId: number; dup: boolean }> = [];
  let pong: (() => void) | undefined;
  void (async () => {
    for (;;) {
      const p = await c.next(120_000).catch(() => "closed" as const);
      if (p === "closed") return;
      if (p.cmd === "publish") {
        publishes.push({
          topic: p.topic,
          payload: p.payload as Buffer,
          messageId: p.messageId ?? 0,
          dup: p.dup === true,
        });
      } else if (p.cmd === "pingresp") pong?.();
    }
  })();
  let taken = 0;
  return {
    end: () => c.end(),
    /** The next PUBLISH from the edge (bounded: a test waiting for one that never comes fails). */
    async nextPublish() {
      const deadline = Date.now() + 20_000;
      while (publishes.length <= taken) {
        if (Date.now() > deadline) throw new Error(`no PUBLISH #${taken + 1} for ${deviceId}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      return publishes[taken++] as { topic: string; payload: Buffer; messageId: number; dup: boolean };
    },
    puback(messageId: number) {
      c.send({ cmd: "puback", messageId } as Packet);
    },
    /** Resolves once the edge answered a PINGREQ sent after everything before it. */
    ping: () =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no PINGRESP")), 20_000);
        pong = () => {
          clearTimeout(timer);
          resolve();
        };
        c.send({ cmd: "pingreq" } as Packet);
      }),
  };
}
