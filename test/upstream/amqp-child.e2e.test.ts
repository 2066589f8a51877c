/**
 * An AMQP child (the official SDK over `azure-iot-device-amqp`) behind an edge hub that
 * restarts while its parent is away: the edge comes back offline on the same ports, the
 * child reconnects and keeps sending, and everything reaches the parent in the order it was
 * sent once the parent returns. (The same through an outage without a restart:
 * ./forwarding.e2e.test.ts.)
 */
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
import { stopHub } from "../helpers/hub.js";
import { freePort } from "../helpers/process.js";

describe("an AMQP child across an edge restart", () => {
  it("reconnects to the restarted edge while the parent is down; the parent gets everything in order when it returns", async () => {
    const rootDir = await tempDir();
    // Fixed ports outside the ephemeral range, so the root and the edge come back on them.
    const rootListen = {
      host: "127.0.0.1",
      mqtts: await freePort(),
      https: await freePort(),
      amqps: false as const,
    };
    const root = await startRoot(rootDir, { listen: rootListen });
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const edgeDir = await tempDir();
    const edgeListen = {
      host: "127.0.0.1",
      mqtts: await freePort(),
      https: await freePort(),
      amqps: await freePort(),
    };
    let edge = await startEdge(edgeDir, parent, { listen: edgeListen });
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

    // The parent goes away; the edge takes what the child sends.
    await stopHub(root);
    await send(5, 10);
    // The edge restarts with its parent still away: it authenticates the child from its cache.
    await stopHub(edge);
    edge = await startEdge(edgeDir, parent, { listen: edgeListen });
    expect(edge.ports.amqps).toBe(edgeListen.amqps);
    // The SDK's transport was cut; its next send connects again (to the same gateway).
    await send(10, 20);
    expect(edge.connectedClients).toContain("leaf1");
    const backlog = (await edge.store.stats()).queues.find((q) => q.name === "$upstream");
    expect(backlog?.count).toBe(15);

    const back = await startRoot(rootDir, { listen: rootListen });
    await eventually("20 at the root", async () => (await rootEvents(back)).length >= 20);
    const got = await rootEvents(back);
    expect(got.map((m) => m.properties.seq)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    expect(got.every((m) => m.properties["$.cdid"] === "leaf1")).toBe(true);
  }, 90_000);
});
