/**
 * Power cuts under the store: a child process appends (8 concurrent writers, two queues
 * atomically) and reports each append once it resolved; it is SIGKILLed, LazyFS drops every
 * unsynced byte, and the store reopened must hold every reported append. The same run with
 * `durability: "wal"` must lose reported appends, or this test could not see a missing fsync.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { MessageStore } from "../../ts/index.js";
import { type Reported, runAndKill } from "../helpers/crash-writer.js";
import { mountLazyFs, NO_FUSE } from "../helpers/lazyfs.js";

/** Appends reported before each kill: enough for several group commits. */
const PER_ROUND = 300;

/** Reported appends the store in `dir` does not hold (body compared), after a reopen. */
async function missingAfterReopen(dir: string, reported: Reported[]): Promise<Reported[]> {
  const store = await MessageStore.open(dir);
  try {
    const tail = (await store.stats()).queues.find((q) => q.name === "q")?.tail ?? 0;
    const stored = new Map<number, Buffer>();
    for (let from = 0; from < tail; ) {
      const batch = await store.read("q", { from, limit: 5000 });
      if (batch.length === 0) break;
      for (const m of batch) stored.set(m.offset, Buffer.from(m.body));
      from = (batch.at(-1)?.offset ?? tail) + 1;
    }
    return reported.filter((r) => {
      const got = stored.get(r.offset);
      return got === undefined || Buffer.compare(got, r.body) !== 0;
    });
  } finally {
    await store.close();
  }
}

describe.skipIf(NO_FUSE)("power cuts under the store (LazyFS)", () => {
  it("keeps every append it acknowledged through SIGKILL and a dropped cache, round after round", async () => {
    const fs = await mountLazyFs();
    const dir = join(fs.mnt, "store");
    const all: Reported[] = [];
    for (let round = 0; round < 3; round++) {
      const reported = await runAndKill(dir, round, { minReported: PER_ROUND });
      expect(reported.length).toBeGreaterThanOrEqual(PER_ROUND);
      all.push(...reported);
      await fs.clearCache();
      const missing = await missingAfterReopen(dir, all);
      console.log(
        `store, fsync, round ${round}: ${reported.length} acknowledged, ${all.length} in all, ${missing.length} missing after the power cut`,
      );
      expect(missing.map((m) => m.offset)).toEqual([]);
    }
  }, 120_000);

  it('loses acknowledged appends with durability "wal" (the check above can fail)', async () => {
    const fs = await mountLazyFs();
    const dir = join(fs.mnt, "store");
    const reported = await runAndKill(dir, 0, { durability: "wal", minReported: PER_ROUND });
    await fs.clearCache();
    const missing = await missingAfterReopen(dir, reported);
    console.log(
      `store, durability none: ${reported.length} acknowledged, ${missing.length} missing after the power cut`,
    );
    expect(missing.length).toBeGreaterThan(0);
  }, 60_000);
});
