import { rm } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { rootEvents, startRoot } from "../helpers/edge.js";
import { stopHub } from "../helpers/hub.js";
import { hubProcess } from "../helpers/process.js";
import { drainUnderWay, expectAll, openLeaves, send, site } from "../helpers/site.js";

/** The `$.mid` and forwarder id the root stored for leaf-a's message `seq`. */
async function storedIds(root: EdgeHub, seq: number): Promise<{ mid?: string; fid?: string }> {
  const m = (await rootEvents(root)).find(
    (e) => e.properties["$.cdid"] === "leaf-a" && e.properties.seq === String(seq),
  );
  return { mid: m?.properties["$.mid"], fid: m?.properties["$.fid"] };
}

/**
 * Devices reuse message ids (one constant id, counters that start again at a reconnect):
 * the parent drops only a resend of a message the edge stored, never a distinct message
 * with the same `$.mid`.
 */
describe("message ids reused by devices behind an edge", () => {
  it("every message reaches the root, in order and once, with the same id on all of them or ids starting again after each reconnect", async () => {
    const s = await site();
    let clients = await openLeaves(s);
    await send(clients, 0, 30, () => "42");
    for (const session of [1, 2]) {
      await Promise.all(clients.map((c) => c.close()));
      clients = await openLeaves(s);
      await send(clients, session * 30, session * 30 + 30, (i) => String(i % 30));
    }
    // Without an id of its own a message goes without one: the edge invents none.
    await send(clients, 90, 91);
    expect(await expectAll(s.root, 91)).toBe(0);
    expect((await storedIds(s.root, 0)).mid).toBe("42");
    expect((await storedIds(s.root, 31)).mid).toBe("1");
    expect((await storedIds(s.root, 90)).mid).toBeUndefined();
    // The root keeps the edge's forwarder id with what it stored (for its recall after a restart).
    expect((await storedIds(s.root, 90)).fid).toMatch(/^edge1\/[A-Za-z0-9_-]{12}\/u\/\d+$/);
  });

  it("through a root restart in the middle of a drain: all arrive, and resends of the same stored messages are still dropped", async () => {
    const s = await site({ maxMessagesPerSec: 1500 });
    let root = await drainUnderWay(s, 600, 200, (i) => String(i % 7));
    // Stopped with publishes in flight: the restarted root recalls the forwarder ids of what
    // it stored, and the edge's resends of those are acknowledged without being stored again.
    await stopHub(root);
    root = await startRoot(s.rootDir, { listen: s.rootListen });
    expect(await expectAll(root, 600)).toBe(0);
  });

  it("through a SIGKILL of the edge in the middle of a drain: all arrive once (its forwarder ids outlive the process)", async () => {
    // A capped drain rate keeps the drain going long enough to be interrupted.
    const s = await site({ maxMessagesPerSec: 1000 });
    const root = await drainUnderWay(s, 600, 200, () => "42");
    await s.edge.stop("SIGKILL");
    const partial = (await rootEvents(root)).length;
    expect(partial).toBeLessThan(1800);
    await hubProcess(s.edgeDir, s.config);
    expect(await expectAll(root, 600)).toBe(0);
  });

  it("after the edge's store is wiped and recreated, its new messages are not taken for the old ones", async () => {
    const s = await site();
    let clients = await openLeaves(s);
    await send(clients, 0, 20);
    await expectAll(s.root, 20);
    await Promise.all(clients.map((c) => c.close()));
    await s.edge.stop("SIGTERM");
    // Offsets start at 0 again in a new store; the store's new incarnation keeps ids apart.
    await rm(join(s.edgeDir, "data/store"), { recursive: true });
    const edge = await hubProcess(s.edgeDir, s.config);
    await edge.waitFor(/"scope-synced"/);
    clients = await openLeaves(s);
    await send(clients, 20, 40);
    expect(await expectAll(s.root, 40)).toBe(0);
    const [before, after] = [await storedIds(s.root, 0), await storedIds(s.root, 20)];
    expect(before.fid?.split("/")[1]).not.toBe(after.fid?.split("/")[1]);
  });
});
