import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  rootEvents,
  startEdge,
  startRoot,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";

describe("edge hub forwarding to a root hub", () => {
  it("syncs its scope, authenticates a child on it, and forwards the child's messages in order as the child", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const edge = await startEdge(await tempDir(), parent);
    await eventually("scope synced", () => edge.registry.getDevice("leaf1") !== undefined);
    expect(edge.registry.getModule("edge1", "$edgeHub")).toBeDefined();
    const leaf = await childClient(gatewayOf(edge), "leaf1", key);
    await leaf.open();
    for (let i = 0; i < 20; i++) {
      const m = new Message(JSON.stringify({ i }));
      m.properties.add("seq", String(i));
      await leaf.sendEvent(m);
    }
    await eventually("20 at the root", async () => (await rootEvents(root)).length >= 20);
    const got = await rootEvents(root);
    expect(got.map((m) => m.properties.seq)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(got.every((m) => m.properties["$.cdid"] === "leaf1")).toBe(true);
    expect(got.map((m) => JSON.parse(m.body.toString()).i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
    await eventually(
      "checkpointed",
      async () => (await edge.store.stats()).queues.find((q) => q.name === "$upstream")?.count === 0,
    );
  });
});
