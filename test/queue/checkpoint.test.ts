import { describe, expect, it } from "vitest";
import { Progress } from "../../ts/queue/checkpoint.js";

/** A queue of `n` offsets, some removed (expired), read in batches through `p`. */
function simulate(seed: number, liveFirst: boolean) {
  let state = seed;
  const rand = (k: number) => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state % k;
  };
  let stored = Array.from({ length: 300 }, (_, i) => i).filter(() => rand(10) > 0);
  const acked = rand(20) - 1;
  stored = stored.filter((o) => o > acked);
  const p = new Progress(acked);

  if (liveFirst) p.splitAt(rand(300) + 1);
  const read = new Set<number>();
  const done = new Set<number>();
  let lastCheckpoint = acked;
  let liveCaughtUp = false;
  for (let step = 0; step < 5000 && done.size < stored.length; step++) {
    if (rand(3) === 0) {
      const plan = p.plan(liveFirst, liveCaughtUp);
      if (plan) {
        const limit = 1 + rand(20);
        const batch = stored
          .filter((o) => o >= plan.from)
          .slice(0, limit)
          .map((offset) => ({ offset }));
        if (plan.segment > 0 && batch.length < limit) liveCaughtUp = true;
        for (const m of p.recordRead(plan, batch, limit)) {
          expect(read.has(m.offset), `offset ${m.offset} read twice`).toBe(false);
          read.add(m.offset);
        }
      }
    } else {
      const open = [...read].filter((o) => !done.has(o));
      const o = open[rand(open.length + 1)];
      if (o !== undefined) {
        done.add(o);
        p.finish(o);
      }
    }
    const c = p.checkpoint();
    expect(c).toBeGreaterThanOrEqual(lastCheckpoint);
    // Everything stored at or under the checkpoint is done.
    for (const o of stored) if (o <= c) expect(done.has(o), `offset ${o} under checkpoint ${c}`).toBe(true);
    lastCheckpoint = c;
  }
  expect(done.size).toBe(stored.length);
  expect(p.checkpoint()).toBeGreaterThanOrEqual(stored.at(-1) ?? acked);
  expect(p.outstanding).toBe(0);
}

describe("queue checkpoint (progress)", () => {
  it("never checkpoints past a message not done, in stored order and live-first, and reads each message once", () => {
    for (let seed = 1; seed <= 60; seed++) {
      simulate(seed, false);
      simulate(seed, true);
    }
  });

  it("after a reset reads again from the checkpoint and remembers what was done above it", () => {
    const p = new Progress(-1);
    const plan = p.plan(false, false);
    expect(plan).toEqual({ segment: 0, from: 0 });
    p.recordRead(
      plan as NonNullable<typeof plan>,
      [0, 1, 2, 3].map((offset) => ({ offset })),
      10,
    );
    p.finish(0);
    p.finish(2);
    expect(p.checkpoint()).toBe(0);
    p.reset(-1);
    expect(p.plan(false, false)).toEqual({ segment: 0, from: 1 });
    expect(p.isDone(2)).toBe(true);
    expect(p.isDone(1)).toBe(false);
  });
});
