/**
 * Persistent sessions are written with a bound: before SUBACK (an acknowledged subscription
 * survives a crash), once per change however many SUBSCRIBEs arrive, never for an unchanged
 * set (SDKs subscribe again after every reconnect), and a clean-session connect of a client
 * without a session writes nothing. The store's KV is the real one; the test only counts
 * the session writes that reach it.
 */
import type { Packet } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";
import { deviceConnect, type RawClient, rawClient } from "../helpers/mqtt-raw.js";

const clients: RawClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.end();
});

/** Counts writes of the `sessions` namespace that completed, in order with `mark`s. */
function sessionWrites(hub: EdgeHub): { events: string[]; mark(what: string): void } {
  const kv = hub.store.kv;
  const events: string[] = [];
  const put = kv.put.bind(kv);
  const del = kv.delete.bind(kv);
  kv.put = async (ns, key, value) => {
    await put(ns, key, value);
    if (ns === "sessions") events.push("stored");
  };
  kv.delete = async (ns, key) => {
    await del(ns, key);
    if (ns === "sessions") events.push("deleted");
  };
  return { events, mark: (what) => events.push(what) };
}

async function connect(hub: EdgeHub, deviceId: string, key: string, clean: boolean): Promise<RawClient> {
  const c = await rawClient(hub.ports.mqtts, hub.caCertificate);
  clients.push(c);
  c.send(deviceConnect(deviceId, key, { clean }));
  const ack = await c.next();
  if (ack === "closed" || ack.cmd !== "connack" || ack.returnCode !== 0) throw new Error(JSON.stringify(ack));
  return c;
}

const TOPICS = ["devices/dev1/messages/devicebound/#", "$iothub/methods/POST/#", "$iothub/twin/res/#"];

/** Sends `n` SUBSCRIBEs of `topics` back to back; resolves with their SUBACKs' message ids. */
async function subscribe(c: RawClient, n: number, topics: string[], onFirst?: () => void): Promise<number[]> {
  for (let i = 1; i <= n; i++)
    c.send({
      cmd: "subscribe",
      messageId: i,
      subscriptions: topics.map((topic) => ({ topic, qos: 1 })),
    } as Packet);
  const ids: number[] = [];
  while (ids.length < n) {
    const p = await c.next();
    if (p === "closed") throw new Error("closed");
    if (p.cmd !== "suback") continue;
    if (ids.length === 0) onFirst?.();
    ids.push(p.messageId ?? 0);
  }
  return ids;
}

describe("session persistence", () => {
  it("stores a clean=false client's subscriptions before SUBACK, once per change, and not at all when unchanged", async () => {
    const hub = await startHub(await tempDir());
    const key =
      (await hub.registry.createDevice({ deviceId: "dev1" })).authentication.symmetricKey?.primaryKey ?? "";
    const writes = sessionWrites(hub);

    const c1 = await connect(hub, "dev1", key, false);
    expect(await subscribe(c1, 50, TOPICS, () => writes.mark("suback"))).toHaveLength(50);
    // One write for fifty SUBSCRIBEs, done before the first SUBACK went out.
    expect(writes.events).toEqual(["stored", "suback"]);

    // An SDK reconnecting: the session is restored, the same subscriptions asked again.
    c1.send({ cmd: "disconnect" });
    await c1.closed;
    const c2 = await connect(hub, "dev1", key, false);
    await subscribe(c2, 5, TOPICS);
    expect(writes.events).toEqual(["stored", "suback"]);

    // A change is written (and only then acknowledged); so is an UNSUBSCRIBE.
    await subscribe(c2, 1, ["$iothub/twin/PATCH/properties/desired/#"], () => writes.mark("suback"));
    c2.send({ cmd: "unsubscribe", messageId: 9, unsubscriptions: ["$iothub/methods/POST/#"] } as Packet);
    expect(await c2.next()).toMatchObject({ cmd: "unsuback", messageId: 9 });
    writes.mark("unsuback");
    expect(writes.events).toEqual(["stored", "suback", "stored", "suback", "stored", "unsuback"]);
    expect(JSON.parse((await hub.store.kv.get("sessions", "dev1"))?.toString() ?? "null")).toEqual([
      "c2d",
      "twin-desired",
      "twin-responses",
    ]);
  });

  it("a clean-session connect of a client without a session writes nothing; one with a session deletes it", async () => {
    const hub = await startHub(await tempDir());
    const key =
      (await hub.registry.createDevice({ deviceId: "dev1" })).authentication.symmetricKey?.primaryKey ?? "";
    const writes = sessionWrites(hub);
    for (let i = 0; i < 3; i++) (await connect(hub, "dev1", key, true)).end();
    expect(writes.events).toEqual([]);
    const c = await connect(hub, "dev1", key, false);
    await subscribe(c, 1, TOPICS);
    c.end();
    await connect(hub, "dev1", key, true);
    expect(writes.events).toEqual(["stored", "deleted"]);
    expect(await hub.store.kv.get("sessions", "dev1")).toBeNull();
  });
});
