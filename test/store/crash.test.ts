import { describe, expect, it } from "vitest";
import { DURABILITIES, MessageStore } from "../../ts/index.js";
import { type Reported, runAndKill } from "../helpers/crash-writer.js";
import { tempDir } from "../helpers/fixtures.js";

// Both durabilities survive a killed process: "wal" writes the WAL before it acks, only the
// fsync (the power-loss guarantee, test/campaigns/powercut-*) is what it skips.
describe.each(DURABILITIES)("crash consistency, durability %s", (durability) => {
  it("keeps every acknowledged append across repeated SIGKILLs, in order, offsets monotonic", async () => {
    const dir = await tempDir();
    const all: Reported[] = [];
    let prevTail = 0;
    for (let round = 0; round < 12; round++) {
      const reported = await runAndKill(dir, round, { durability });
      all.push(...reported);
      const store = await MessageStore.open(dir);
      try {
        const stats = await store.stats();
        const q = stats.queues.find((x) => x.name === "q");
        const mirror = stats.queues.find((x) => x.name === "mirror");
        const tail = q?.tail ?? 0;
        // Offsets never go back, and both queues of the atomic append agree.
        expect(tail).toBeGreaterThanOrEqual(prevTail);
        expect(mirror?.tail).toBe(tail);
        for (const r of reported) expect(r.offset).toBeGreaterThanOrEqual(prevTail);
        prevTail = tail;
        const stored = new Map<number, Buffer>();
        for (let from = 0; from < tail; ) {
          const batch = await store.read("q", { from, limit: 5000 });
          for (const m of batch) stored.set(m.offset, Buffer.from(m.body));
          from = (batch.at(-1)?.offset ?? tail) + 1;
        }
        // No gaps: whatever survived is a contiguous prefix of the offsets.
        expect(stored.size).toBe(tail);
        for (const r of all) {
          expect(r.mirror).toBe(r.offset);
          const got = stored.get(r.offset);
          expect(got, `offset ${r.offset} reported durable but missing`).toBeDefined();
          expect(Buffer.compare(got as Buffer, r.body)).toBe(0);
        }
      } finally {
        await store.close();
      }
    }
    expect(all.length).toBeGreaterThan(100);
  }, 120_000);
});
