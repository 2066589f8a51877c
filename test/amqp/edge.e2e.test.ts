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
  synced,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, stopHub } from "../helpers/hub.js";

describe("an AMQP child behind an edge hub", () => {
  it("sends while the parent is down, acknowledged by the edge alone; everything reaches the parent in order when it returns", async () => {
    const rootDir = await tempDir();
    const root = await startRoot(rootDir);
    const rootListen = { host: "127.0.0.1", mqtts: root.ports.mqtts, https: root.ports.https };
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const edge = await startEdge(await tempDir(), parent, BOTH_HEADS);
    await synced(edge);
    const leaf = await childClient(gatewayOf(edge), "leaf1", key, "amqp");
    await leaf.open();
    const send = async (from: number, to: number) => {
      for (let i = from; i < to; i++) {
        const m = new Message(JSON.stringify({ i }));
        m.properties.add("seq", String(i));
        await leaf.sendEvent(m);
      }
    };
    await send(0, 5);
    await eventually("5 at the root", async () => (await rootEvents(root)).length >= 5);

    // The parent goes away: the edge stores what the child sends and accepts it.
    await stopHub(root);
    await send(5, 15);
    const backlog = (await edge.store.stats()).queues.find((q) => q.name === "$upstream");
    expect(backlog?.count).toBe(10);
    const back = await startRoot(rootDir, { listen: rootListen });
    await eventually("15 at the root", async () => (await rootEvents(back)).length >= 15);
    const got = await rootEvents(back);
    expect(got.map((m) => m.properties.seq)).toEqual(Array.from({ length: 15 }, (_, i) => String(i)));
    expect(got.every((m) => m.properties["$.cdid"] === "leaf1")).toBe(true);
  }, 60_000);
});
