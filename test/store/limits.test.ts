import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EdgeHubError, MessageStore } from "../../ts/index.js";
import { eventually, openStore, tempDir } from "../helpers/fixtures.js";

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(EdgeHubError);
  return (err as EdgeHubError).code;
}

describe("TTL", () => {
  it("never returns expired messages and reclaims their space, counted as expired", async () => {
    const s = await openStore(await tempDir(), { defaultTtlSecs: 1 });
    await s.append(
      "q",
      Array.from({ length: 50 }, () => ({ body: Buffer.alloc(64) })),
    );
    await s.append("q", [{ body: Buffer.from("keep"), ttlSecs: 3600 }]);
    const before = await s.stats();
    expect(before.count).toBe(51);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await s.read("q")).map((m) => m.body.toString())).toEqual(["keep"]);
    await eventually("expired messages swept", async () => (await s.stats()).count === 1);
    const after = await s.stats();
    expect(after.expired).toBe(50);
    expect(after.bytes).toBeLessThan(before.bytes / 20);
  });

  it("honours a per-message ttl shorter than the ones before it", async () => {
    const s = await openStore(await tempDir());
    await s.append("q", [
      { body: Buffer.from("long"), ttlSecs: 3600 },
      { body: Buffer.from("short"), ttlSecs: 1 },
      { body: Buffer.from("never"), ttlSecs: -1 },
    ]);
    const [, short, never] = await s.read("q");
    expect(short?.expiresAt).toBeLessThanOrEqual((short?.enqueuedAt ?? 0) + 1000);
    expect(never?.expiresAt).toBeNull();
    await new Promise((r) => setTimeout(r, 1100));
    expect((await s.read("q")).map((m) => m.body.toString())).toEqual(["long", "never"]);
    await eventually("short one swept", async () => (await s.stats()).count === 2);
  });
});

describe("quota", () => {
  it("reject: fails the whole append with STORE_FULL and writes nothing", async () => {
    const s = await openStore(await tempDir(), { maxSizeBytes: 5000 });
    const msg = { body: Buffer.alloc(400) };
    let accepted = 0;
    for (;;) {
      try {
        await s.append("q", [msg, msg]);
        accepted += 2;
      } catch (err) {
        expect((err as EdgeHubError).code).toBe("STORE_FULL");
        expect((err as EdgeHubError).message).toMatch(/5000/);
        break;
      }
    }
    const st = await s.stats();
    expect(st.count).toBe(accepted);
    expect(st.bytes).toBeLessThanOrEqual(5000);
    expect(await codeOf(s.append(["q", "r"], [msg]))).toBe("STORE_FULL");
    expect(await s.read("r")).toEqual([]);
    await s.ack("q", 1);
    await s.append("q", [msg]);
  });

  it("drop-oldest: evicts the oldest messages to stay under the quota and counts them", async () => {
    const s = await openStore(await tempDir(), { maxSizeBytes: 8000, whenFull: "drop-oldest" });
    for (let i = 0; i < 100; i++) {
      await s.append("q", [{ body: Buffer.from(`${i}`.padStart(300, "0")) }]);
      expect((await s.stats()).bytes).toBeLessThanOrEqual(8000);
    }
    const st = await s.stats();
    expect(st.dropped).toBeGreaterThan(70);
    expect(st.dropped + st.count).toBe(100);
    const left = await s.read("q");
    expect(left.at(-1)?.offset).toBe(99);
    expect(left[0]?.offset).toBe(st.dropped);
  });
});

describe("bad input and lifecycle", () => {
  it("rejects bad arguments with INVALID_ARGUMENT and keeps working", async () => {
    const s = await openStore(await tempDir());
    const body = Buffer.from("ok");
    expect(await codeOf(s.append("", [{ body }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append([], [{ body }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append(["a", "a"], [{ body }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append("q", [{ body: "text" as unknown as Buffer }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append("q", [null as unknown as { body: Buffer }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append("q", [{ body, ttlSecs: 0 }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append("q", [{ body, ttlSecs: 1.5 }]))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.append("q", [{ body, properties: { n: 1 as unknown as string } }]))).toBe(
      "INVALID_ARGUMENT",
    );
    expect(await codeOf(s.read("q", { from: -1 }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.ack("q", -1))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.ack("q", 0.5))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(s.ack("q", 0))).toBe("INVALID_OFFSET");
    expect(await codeOf(s.kv.put("", "k", "v"))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(MessageStore.open(""))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(MessageStore.open(await tempDir(), { defaultTtlSecs: 0 }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(MessageStore.open(await tempDir(), { maxSizeBytes: -1 }))).toBe("INVALID_ARGUMENT");
    expect(await s.append("q", [{ body }])).toEqual([0]);
  });

  it("fails every call after close with STORE_CLOSED; close twice is fine", async () => {
    const s = await MessageStore.open(await tempDir());
    await s.close();
    await s.close();
    expect(s.closed).toBe(true);
    expect(await codeOf(s.append("q", [{ body: Buffer.from("x") }]))).toBe("STORE_CLOSED");
    expect(await codeOf(s.read("q"))).toBe("STORE_CLOSED");
    expect(await codeOf(s.ack("q", 0))).toBe("STORE_CLOSED");
    expect(await codeOf(s.stats())).toBe("STORE_CLOSED");
    expect(await codeOf(s.kv.get("n", "k"))).toBe("STORE_CLOSED");
  });

  it("refuses a corrupt store with STORE_CORRUPT naming the path", async () => {
    const dir = await tempDir();
    const s = await MessageStore.open(dir);
    await s.append("q", [{ body: Buffer.from("x") }]);
    await s.close();
    await writeFile(join(dir, "CURRENT"), "garbage-without-newline");
    const err = await MessageStore.open(dir).catch((e: unknown) => e);
    expect((err as EdgeHubError).code).toBe("STORE_CORRUPT");
    expect((err as EdgeHubError).message).toContain(dir);
  });

  it("refuses a second open of the same store with STORE_LOCKED", async () => {
    const dir = await tempDir();
    await openStore(dir);
    expect(await codeOf(MessageStore.open(dir))).toBe("STORE_LOCKED");
  });

  it("reopens a backlog with the same counters", async () => {
    const dir = await tempDir();
    const s = await MessageStore.open(dir);
    for (let i = 0; i < 20; i++) {
      await s.append(
        ["up", "local"],
        Array.from({ length: 1000 }, (_, j) => ({ body: Buffer.from(`${i}-${j}`) })),
      );
    }
    await s.ack("local", 12_345);
    const before = await s.stats();
    await s.close();
    const r = await openStore(dir);
    const after = await r.stats();
    expect(after.queues.map(({ oldestAgeMs: _, ...q }) => q)).toEqual(
      before.queues.map(({ oldestAgeMs: _, ...q }) => q),
    );
    expect(after.bytes).toBe(before.bytes);
    expect((await r.read("local", { limit: 1 }))[0]?.body.toString()).toBe("12-346");
  });
});
