/**
 * The edge's own link comes back as soon as the parent listens again, not when its backoff
 * ends: while the parent's port does not answer it is probed with bare TCP connects
 * (link.ts `PROBE_EVERY_MS`), and an accepted probe dials at once. The parent link's
 * backoff cap is a minute here, so a link that waited it out would come back far later.
 */
import { describe, expect, it } from "vitest";
import { edgeIdentity, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { recordingLogger, stopHub } from "../helpers/hub.js";

describe("the parent returning", () => {
  it("is noticed by a probe while the link waits out a long backoff, and the link dials at once", async () => {
    const rootDir = await tempDir();
    let root = await startRoot(rootDir);
    const ports = { mqtts: root.ports.mqtts, https: root.ports.https, amqps: false as const };
    const parent = { ...(await edgeIdentity(root, "edge1")), maxBackoffMs: 60_000 };
    const log = recordingLogger();
    const edge = await startEdge(await tempDir(), parent, {}, log);
    await synced(edge);
    await stopHub(root);
    // Wait until the link's next attempt is more than 2 s away (its backoff doubles per failure).
    const longWait = () =>
      log.events.some(
        (e) => e.event === "upstream-link-retry" && e.fields.probing === true && Number(e.fields.inMs) > 2000,
      );
    await eventually("a long backoff", longWait);
    const from = log.events.length;
    root = await startRoot(rootDir, { listen: { host: "127.0.0.1", ...ports } });
    await eventually("the link up again", () =>
      log.events.slice(from).some((e) => e.event === "upstream-link-up"),
    );
    const answered = log.events.slice(from).find((e) => e.event === "upstream-parent-answers");
    expect(answered, "a probe saw the parent").toBeDefined();
    // The dial followed the probe, with time left on the backoff it would otherwise have waited.
    expect(Number(answered?.fields.backoffLeftMs)).toBeGreaterThan(0);
    expect(edge.upstream?.online).toBe(true);
  }, 60_000);
});
