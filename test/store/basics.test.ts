import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { MessageStore } from "../../ts/index.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

describe("MessageStore through the native binding", () => {
  it("assigns offsets from 0 per queue and returns bodies byte-identical with properties", async () => {
    const s = await openStore(await tempDir());
    const bodies = [randomBytes(300), Buffer.alloc(0), randomBytes(4096)];
    const props = { "$.mid": "m-1", ключ: "värde ✓", empty: "" };
    expect(
      await s.append(
        "q",
        bodies.map((body) => ({ body, properties: props })),
      ),
    ).toEqual([0, 1, 2]);
    expect(await s.append("q", [{ body: Buffer.from("x") }])).toEqual([3]);
    expect(await s.append("other", [{ body: new Uint8Array([1, 2]) }])).toEqual([0]);
    const got = await s.read("q");
    expect(got.map((m) => m.offset)).toEqual([0, 1, 2, 3]);
    got.slice(0, 3).forEach((m, i) => {
      expect(Buffer.compare(m.body, bodies[i] as Buffer)).toBe(0);
      expect(m.properties).toEqual(props);
      expect(m.expiresAt).toBe(m.enqueuedAt + 7200 * 1000);
    });
    expect(got[3]?.properties).toEqual({});
    expect((await s.read("q", { from: 2, limit: 1 })).map((m) => m.offset)).toEqual([2]);
    expect(await s.read("never-written")).toEqual([]);
  });

  it("appends to several queues atomically and reports offsets per queue", async () => {
    const s = await openStore(await tempDir());
    await s.append("a", [{ body: Buffer.from("pre") }]);
    const offs = await s.append(["a", "b"], [{ body: Buffer.from("1") }, { body: Buffer.from("2") }]);
    expect(offs).toEqual([
      [1, 2],
      [0, 1],
    ]);
    expect((await s.read("b")).map((m) => m.body.toString())).toEqual(["1", "2"]);
  });

  it("appends parts in one write, all or none: a message in several forms across queues", async () => {
    const s = await MessageStore.open(await tempDir(), { maxSizeBytes: 4096 });
    const offs = await s.appendParts([
      { queues: ["a", "b"], messages: [{ body: Buffer.from("m"), properties: { "$.in": "x" } }] },
      { queues: ["b"], messages: [{ body: Buffer.from("m"), properties: { "$.in": "y" }, ttlSecs: 60 }] },
    ]);
    expect(offs).toEqual([[[0], [0]], [[1]]]);
    expect((await s.read("b")).map((m) => m.properties["$.in"])).toEqual(["x", "y"]);
    const before = await s.stats();
    // The second part is over the quota: the first is not stored either.
    await expect(
      s.appendParts([
        { queues: ["a"], messages: [{ body: Buffer.from("small") }] },
        { queues: ["c"], messages: [{ body: Buffer.alloc(4000) }] },
      ]),
    ).rejects.toMatchObject({ code: "STORE_FULL" });
    expect((await s.stats()).count).toBe(before.count);
    expect((await s.read("a")).map((m) => m.body.toString())).toEqual(["m"]);
    await expect(s.appendParts([])).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(
      s.appendParts([{ queues: ["a", "a"], messages: [{ body: Buffer.from("x") }] }]),
    ).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await s.close();
  });

  it("acks prefixes durably; after reopen reading from ackedUpTo + 1 resumes exactly", async () => {
    const dir = await tempDir();
    const s = await MessageStore.open(dir);
    await s.append(
      "q",
      Array.from({ length: 10 }, (_, i) => ({ body: Buffer.from(`m${i}`) })),
    );
    await s.ack("q", 4);
    expect((await s.read("q", { from: 0 }))[0]?.offset).toBe(5);
    await s.close();
    const r = await openStore(dir);
    const q = (await r.stats()).queues[0];
    expect(q).toMatchObject({ name: "q", count: 5, head: 5, tail: 10, ackedUpTo: 4 });
    const rest = await r.read("q", { from: (q?.ackedUpTo ?? -1) + 1 });
    expect(rest.map((m) => m.body.toString())).toEqual(["m5", "m6", "m7", "m8", "m9"]);
    expect(await r.append("q", [{ body: Buffer.from("n") }])).toEqual([10]);
  });

  it("reports stats per queue with totals and oldest age", async () => {
    const s = await openStore(await tempDir());
    const st0 = await s.stats();
    expect(st0).toMatchObject({ queues: [], count: 0, bytes: 0, expired: 0, dropped: 0 });
    await s.append(["a", "b"], [{ body: Buffer.alloc(100) }]);
    await new Promise((r) => setTimeout(r, 30));
    const st = await s.stats();
    expect(st.count).toBe(2);
    expect(st.bytes).toBe((st.queues[0]?.bytes ?? 0) + (st.queues[1]?.bytes ?? 0));
    expect(st.queues[0]?.bytes).toBeGreaterThan(100);
    expect(st.queues[0]?.oldestAgeMs).toBeGreaterThanOrEqual(25);
    expect(st.queues[0]?.ackedUpTo).toBe(-1);
  });

  it("limits a read by bytes but always returns at least one message", async () => {
    const s = await openStore(await tempDir());
    await s.append(
      "q",
      Array.from({ length: 10 }, () => ({ body: Buffer.alloc(1000) })),
    );
    expect(await s.read("q", { maxBytes: 3500 })).toHaveLength(3);
    expect(await s.read("q", { maxBytes: 10 })).toHaveLength(1);
  });

  it("keeps each caller's order under 32 concurrent appenders", async () => {
    const s = await openStore(await tempDir());
    await Promise.all(
      Array.from({ length: 32 }, async (_, c) => {
        let last = -1;
        for (let i = 0; i < 50; i++) {
          const [off] = await s.append("q", [{ body: Buffer.from(`${c}:${i}`) }]);
          expect(off).toBeGreaterThan(last);
          last = off ?? -1;
        }
      }),
    );
    const all = await s.read("q", { limit: 5000 });
    expect(all.map((m) => m.offset)).toEqual(Array.from({ length: 1600 }, (_, i) => i));
    for (let c = 0; c < 32; c++) {
      const mine = all.map((m) => m.body.toString()).filter((b) => b.startsWith(`${c}:`));
      expect(mine).toEqual(Array.from({ length: 50 }, (_, i) => `${c}:${i}`));
    }
  });

  it("keeps small durable state in the kv space", async () => {
    const dir = await tempDir();
    const s = await MessageStore.open(dir);
    await s.kv.put("twins", "dev1", '{"a":1}');
    await s.kv.put("twins", "dev2", Buffer.from([0, 1]));
    await s.kv.put("other", "dev1", "x");
    await s.kv.delete("twins", "dev2");
    await s.close();
    const r = await openStore(dir);
    expect((await r.kv.get("twins", "dev1"))?.toString()).toBe('{"a":1}');
    expect(await r.kv.get("twins", "dev2")).toBeNull();
    expect((await r.kv.scan("twins")).map((e) => e.key)).toEqual(["dev1"]);
    expect(await r.kv.scan("twins", "zzz")).toEqual([]);
  });
});
