import { describe, expect, it } from "vitest";
import { routesConfig } from "../../ts/config/config.js";
import type { MessageStore } from "../../ts/index.js";
import { IdentityShares } from "../../ts/routing/identity-shares.js";
import { RouteTable } from "../../ts/routing/route-table.js";
import { Router, type Telemetry } from "../../ts/routing/router.js";
import { recordSize } from "../../ts/routing/share-records.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

const counted = (q: string) => q === "$upstream" || q.startsWith("$inputs/");

/** Upstream, plus two module inputs for messages with `fan=1` (three copies in two forms). */
const routes = routesConfig("routes", {
  up: "FROM /messages/* INTO $upstream",
  a: "FROM /messages/* WHERE fan = '1' INTO BrokeredEndpoint(\"/modules/filter/inputs/a\")",
  b: {
    route: "FROM /messages/* WHERE fan = '1' INTO BrokeredEndpoint(\"/modules/audit/inputs/bee\")",
    priority: 1,
  },
});

function accept(router: Router, t: Omit<Telemetry, "properties"> & { properties?: Record<string, string> }) {
  return new Promise<unknown>((resolve) =>
    router.accept({ properties: {}, ...t } as Telemetry, (err) => resolve(err)),
  );
}

async function setup(store: MessageStore, limit = 1_000_000) {
  const shares = await IdentityShares.open(store, counted, limit);
  const router = new Router(store, new RouteTable(routes, "$upstream", () => "edge1", true));
  router.setShares(shares);
  return { shares, router };
}

/** Live bytes per sender, read from the records themselves. */
async function truth(store: MessageStore): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const q of (await store.stats()).queues) {
    for (const m of await store.read(q.name, { limit: 100_000 })) {
      const id = m.properties["$.cmid"]
        ? `${m.properties["$.cdid"]}/${m.properties["$.cmid"]}`
        : `${m.properties["$.cdid"]}`;
      out.set(id, (out.get(id) ?? 0) + recordSize(m.properties, m.body.length));
    }
  }
  return out;
}

const counts = (shares: IdentityShares) =>
  Object.fromEntries(shares.status().top.map((t) => [t.identity, t.bytes]));

describe("identity shares", () => {
  it("charges every copy to its sender as the store counts it, across queues and forms", async () => {
    const store = await openStore(await tempDir());
    const { shares, router } = await setup(store);
    const sent = [
      accept(router, {
        deviceId: "d1",
        body: Buffer.alloc(300),
        properties: { fan: "1", k: "é".repeat(70) },
      }),
      accept(router, { deviceId: "d1", body: Buffer.alloc(10) }),
      accept(router, { deviceId: "d2", moduleId: "m", body: Buffer.alloc(50), properties: { fan: "1" } }),
    ];
    expect(await Promise.all(sent)).toEqual([null, null, null]);
    expect(
      await accept(router, { deviceId: "d2", body: Buffer.alloc(5000), properties: { fan: "1" } }),
    ).toBeNull();
    const stats = await store.stats();
    expect(stats.queues.map((q) => q.name).sort()).toEqual([
      "$inputs/edge1/audit/p1",
      "$inputs/edge1/filter",
      "$upstream",
    ]);
    const c = counts(shares);
    expect(Object.keys(c).sort()).toEqual(["d1", "d2", "d2/m"]);
    // Exactly what the store holds, and each sender's part of it.
    expect((c.d1 ?? 0) + (c.d2 ?? 0) + (c["d2/m"] ?? 0)).toBe(stats.bytes);
    expect(c).toEqual(Object.fromEntries(await truth(store)));
    await shares.close();
  });

  it("refuses a sender past its share and no other, and takes it again once acknowledged", async () => {
    const store = await openStore(await tempDir());
    const { shares, router } = await setup(store, 3000);
    const body = Buffer.alloc(900);
    for (let i = 0; i < 3; i++) expect(await accept(router, { deviceId: "loud", body })).toBeNull();
    expect(await accept(router, { deviceId: "loud", body })).toMatchObject({ code: "STORE_SHARE_EXCEEDED" });
    expect(await accept(router, { deviceId: "quiet", body })).toBeNull();
    // Nothing of the refused one was stored.
    expect((await store.stats()).count).toBe(4);
    expect(shares.status().refused).toBe(1);
    await store.ack("$upstream", 0);
    expect(await accept(router, { deviceId: "loud", body })).toBeNull();
    await shares.close();
  });

  it("releases as the head moves, never below the truth, with 32 marks however long the backlog", async () => {
    const store = await openStore(await tempDir());
    const { shares, router } = await setup(store);
    // One store call each (awaited): 300 marks made, thinned to 32.
    for (let i = 0; i < 300; i++)
      expect(
        await accept(router, { deviceId: i % 3 === 0 ? "a" : "b", body: Buffer.alloc(100 + (i % 7) * 50) }),
      ).toBeNull();
    const stored = await truth(store);
    for (const upTo of [17, 90, 151, 240, 298]) {
      await store.ack("$upstream", upTo);
      const real = await truth(store);
      const c = counts(shares);
      for (const id of ["a", "b"]) {
        const live = real.get(id) ?? 0;
        expect(c[id] ?? 0).toBeGreaterThanOrEqual(live);
        // Over by at most about one mark's span: a few percent of what it stored here.
        expect((c[id] ?? 0) - live).toBeLessThanOrEqual(0.1 * (stored.get(id) ?? 0));
      }
    }
    await store.ack("$upstream", 299);
    expect(shares.status().top).toEqual([]);
    await shares.close();
  });

  it("after a crash, counts what was stored since the last save once, from the records, even between a save's two writes", async () => {
    const dir = await tempDir();
    const store = await openStore(dir);
    const { shares, router } = await setup(store);
    for (let i = 0; i < 20; i++)
      expect(
        await accept(router, { deviceId: "d1", body: Buffer.alloc(200), properties: { fan: String(i % 2) } }),
      ).toBeNull();
    await shares.save();
    const covered = await store.kv.get("shares", "covered");
    await store.ack("$upstream", 4);
    const more = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const from = i % 2 ? { deviceId: "d2" } : { deviceId: "d1", moduleId: "m" };
        expect(
          await accept(router, { ...from, body: Buffer.alloc(300), properties: { fan: "1" } }),
        ).toBeNull();
      }
    };
    await more(5);
    // A save that wrote its identities but crashed before the offsets they cover.
    await shares.save();
    await store.kv.put("shares", "covered", covered ?? "");
    await more(7);
    const before = counts(shares);
    // The crash: the store goes away with no save after the last appends.
    await store.close();
    await shares.close();
    const reopened = await openStore(dir);
    const again = await IdentityShares.open(reopened, counted, 1_000_000);
    expect(counts(again)).toEqual(before);
    expect(before).toEqual(Object.fromEntries(await truth(reopened)));
    await again.close();
  });

  it("starts counting at the tails when first turned on: an older backlog is charged to no one", async () => {
    const store = await openStore(await tempDir());
    await store.append("$upstream", [{ body: Buffer.alloc(500), properties: { "$.cdid": "old" } }]);
    const { shares, router } = await setup(store);
    expect(await accept(router, { deviceId: "old", body: Buffer.alloc(10) })).toBeNull();
    const live = (await truth(store)).get("old") ?? 0;
    expect(counts(shares)).toEqual({ old: live - recordSize({ "$.cdid": "old" }, 500) });
    await shares.close();
  });

  it("opens over damaged saved entries: they count nothing, the records after them count", async () => {
    const store = await openStore(await tempDir());
    const { shares, router } = await setup(store);
    expect(await accept(router, { deviceId: "d1", body: Buffer.alloc(100) })).toBeNull();
    await shares.close();
    await store.kv.put("shares", "i:d1", "{not json");
    await store.kv.put("shares", "i:d9", JSON.stringify({ queues: { $upstream: [5, "x", [1]] } }));
    await store.kv.put("shares", "covered", JSON.stringify({ $upstream: 0 }));
    const again = await IdentityShares.open(store, counted, 1_000_000);
    expect(counts(again)).toEqual(Object.fromEntries(await truth(store)));
    await again.close();
  });
});
