/**
 * Revocation upstream reaching an edge hub before its next scheduled scope sync: when the
 * parent refuses a child's link while it accepts the edge's own, the edge syncs its scope.
 */
import { describe, expect, it } from "vitest";
import { childOf, edgeIdentity, rootEvents, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedRaw, deviceConnect, publishSeq, rawClient } from "../helpers/mqtt-raw.js";

describe("revocation at an edge hub", () => {
  it("disconnects a child disabled or deleted upstream once the parent refuses its link, without waiting for scopeRefreshSecs", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const keys = {
      leafA: await childOf(root, "edge1", "leafA"),
      leafB: await childOf(root, "edge1", "leafB"),
    };
    // The default refresh (3600 s): only the refusal can bring the change in time.
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const firstSync = edge.upstream?.scope?.lastSyncedAt;
    const a = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leafA", keys.leafA);
    const b = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "leafB", keys.leafB);
    // Each child's messages open its link to the parent.
    expect(await publishSeq(a, "leafA", 0)).toBe(true);
    expect(await publishSeq(b, "leafB", 0)).toBe(true);
    await eventually("both forwarded", async () => (await rootEvents(root)).length >= 2);

    await root.registry.updateDevice({ deviceId: "leafA", status: "disabled" });
    await root.registry.deleteDevice("leafB");
    // The root closes their links; their retries are refused; the edge syncs and closes them.
    let closed = 0;
    for (const c of [a, b]) void c.closed.then(() => closed++);
    await eventually("both children disconnected at the edge", () => closed === 2);
    expect(edge.upstream?.scope?.lastSyncedAt).toBeGreaterThan(firstSync ?? 0);
    for (const [id, key] of Object.entries(keys)) {
      const again = await rawClient(edge.ports.mqtts, edge.caCertificate);
      again.send(deviceConnect(id, key, { clean: true }));
      expect(await again.next(), id).toMatchObject({ cmd: "connack", returnCode: 5 });
    }
  });
});
