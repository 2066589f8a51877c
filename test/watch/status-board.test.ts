/**
 * The watching view of a real hub's store: dead letters (reason and origin, never the
 * body), per-device delivery backlogs, the quota, and the same figures in /metrics.
 */
import { describe, expect, it } from "vitest";
import type { WatchStatus } from "../../ts/observe/status.js";
import { tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";
import { localGet } from "../helpers/local-http.js";

/** The text exposition of the listener on `port`. */
const scrape = async (port: number) => (await localGet(port, "/metrics")).body;

describe("status board", () => {
  it("shows dead letters without their bodies, per-device backlogs and the quota", async () => {
    const hub = await startHub(await tempDir(), {
      metrics: { port: 0 },
      storeAndForwardConfiguration: { storeLimits: { maxSizeBytes: 1_000_000 } },
    });
    // What the forwarder writes when the parent refuses a message (ts/upstream/forwarder.ts).
    await hub.store.append("$deadletter", [
      {
        body: Buffer.from("secret reading"),
        properties: { "$.dlr": "the parent refused it", "$.dlq": "$upstream", "$.dlo": "3" },
        ttlSecs: -1,
      },
    ]);
    await hub.store.append("$c2d/dev1", [{ body: Buffer.from("a") }, { body: Buffer.from("bb") }]);
    await hub.store.append("$inputs/edge1/filter", [{ body: Buffer.from("c") }]);

    const s = (await hub.status()) as unknown as WatchStatus;
    expect(s.counters.deadLettered).toBe(1);
    expect(s.deadLetters).toEqual([
      {
        offset: 0,
        at: expect.any(String),
        queue: "$upstream",
        reason: "the parent refused it",
        bodyBytes: "secret reading".length,
      },
    ]);
    expect(JSON.stringify(s)).not.toContain("secret reading");
    // Dead letters and the root's events log are not a backlog; delivery queues are.
    expect(s.backlog.messages).toBe(3);
    expect(s.backlog.queues.map((q) => [q.queue, q.messages])).toEqual([
      ["$c2d/dev1", 2],
      ["$inputs/edge1/filter", 1],
    ]);
    expect(s.backlog.devices).toEqual([
      expect.objectContaining({ id: "dev1", direction: "to", messages: 2 }),
      expect.objectContaining({ id: "edge1/filter", direction: "to", messages: 1 }),
    ]);
    const stats = await hub.store.stats();
    expect(s.quota).toEqual({
      usedBytes: stats.bytes,
      maxSizeBytes: 1_000_000,
      usedPercent: Math.round((stats.bytes / 1_000_000) * 1000) / 10,
    });

    const m = await scrape(hub.ports.metrics);
    expect(m).toMatch(/^edgehub_dead_letters_total 1$/m);
    expect(m).toMatch(/^edgehub_backlog_messages\{endpoint="\$c2d\/dev1"\} 2$/m);
    expect(m).toMatch(/^edgehub_messages_in_total\{endpoint="\$inputs\/edge1\/filter"\} 1$/m);
    expect(m).toMatch(/^edgehub_backlog_oldest_age_seconds\{endpoint="\$c2d\/dev1"\} [\d.e-]+$/m);
    // Acknowledged: counted out, no longer waiting.
    await hub.store.ack("$c2d/dev1", 1);
    const after = await scrape(hub.ports.metrics);
    expect(after).toMatch(/^edgehub_messages_out_total\{endpoint="\$c2d\/dev1"\} 2$/m);
    expect(after).toMatch(/^edgehub_backlog_messages\{endpoint="\$c2d\/dev1"\} 0$/m);
  });
});
