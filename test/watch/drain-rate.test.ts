/** The drain rate and ETA computed from backlog samples (ts/observe/history.ts), row by row. */
import { describe, expect, it } from "vitest";
import { drainRate, type Sample } from "../../ts/observe/history.js";

/** Samples one second apart from `[messages, appended]` pairs. */
function samples(...rows: Array<[number, number]>): Sample[] {
  return rows.map(([messages, appended], i) => ({
    t: i * 1000,
    messages,
    bytes: messages * 10,
    appended,
    online: true,
  }));
}

describe("drainRate", () => {
  it("has no rate and no ETA without samples", () => {
    expect(drainRate([], 30_000)).toEqual({ inPerSec: 0, outPerSec: 0, windowSecs: 0, etaSecs: null });
  });

  it("is empty (ETA 0) when nothing waits", () => {
    expect(drainRate(samples([0, 5], [0, 9]), 30_000)).toEqual({
      inPerSec: 4,
      outPerSec: 4,
      windowSecs: 1,
      etaSecs: 0,
    });
  });

  it("gives the ETA at the net rate while the backlog shrinks", () => {
    // 100 waiting; 10/s leave, 5/s arrive: net 5/s over 2 s.
    expect(drainRate(samples([110, 0], [105, 5], [100, 10]), 30_000)).toEqual({
      inPerSec: 5,
      outPerSec: 10,
      windowSecs: 2,
      etaSecs: 20,
    });
  });

  it("has no ETA while the backlog grows or stands still", () => {
    expect(drainRate(samples([0, 0], [10, 10], [20, 20]), 30_000).etaSecs).toBeNull();
    expect(drainRate(samples([20, 20], [20, 20]), 30_000).etaSecs).toBeNull();
  });

  it("gives the ETA of the backlog now, not of the last sample", () => {
    // Sampled: 100 leaving at 10/s. Since the last sample 30 more arrived: 130 at 10/s.
    expect(drainRate(samples([120, 0], [110, 0], [100, 0]), 30_000, 130).etaSecs).toBe(13);
    // Sampled empty, 5 stored since: not shrinking yet.
    expect(drainRate(samples([0, 0], [0, 0]), 30_000, 5).etaSecs).toBeNull();
  });

  it("looks back only over the window", () => {
    // A burst 4 s ago is outside a 2 s window.
    const s = samples([0, 0], [50, 50], [50, 50], [40, 50], [30, 50]);
    expect(drainRate(s, 2000)).toMatchObject({ inPerSec: 0, outPerSec: 10, windowSecs: 2, etaSecs: 3 });
  });

  it("never counts a negative rate in when a queue was removed (Σ tail went down)", () => {
    // Its 10 waiting messages left the backlog; nothing came in.
    expect(drainRate(samples([10, 100], [0, 20]), 30_000)).toMatchObject({ inPerSec: 0, outPerSec: 10 });
  });
});
