import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";

describe("hub status", () => {
  it("reports the event loop's delay, so a blocked loop shows", async () => {
    const hub = await startHub(await tempDir());
    // The sampler measures from its first tick on.
    await new Promise((r) => setTimeout(r, 100));
    // Hold the loop for 150 ms: the delay the next status reports covers it.
    const until = performance.now() + 150;
    while (performance.now() < until);
    // The sampler records the delay when its own timer next fires.
    await new Promise((r) => setTimeout(r, 50));
    const lag = (await hub.status()).eventLoopDelayMs as Record<string, number>;
    expect(lag.windowSecs).toBe(5);
    expect(lag.maxMs).toBeGreaterThanOrEqual(100);
    expect(lag.p99Ms).toBeLessThanOrEqual(lag.maxMs as number);
    expect(lag.p50Ms).toBeLessThanOrEqual(lag.p99Ms as number);
  });
});
