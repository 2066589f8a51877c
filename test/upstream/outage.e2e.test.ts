import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Client, Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import type { EdgeHub, ParentConfigInput } from "../../ts/index.js";
import { childClient, childOf, edgeIdentity, type Gateway, rootEvents, startRoot } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { freePort, hubProcess } from "../helpers/process.js";
import { BlackholeProxy } from "../helpers/proxy.js";

const LEAVES = ["leaf-a", "leaf-b", "leaf-c"];

/** Sends `seq` from..to-1 from each client, awaiting each PUBACK (durable at the edge). */
async function sendRange(clients: Map<string, Client>, from: number, to: number): Promise<void> {
  await Promise.all(
    [...clients.values()].map(async (c) => {
      for (let i = from; i < to; i++) {
        const m = new Message(`payload ${i}`);
        m.properties.add("seq", String(i));
        await c.sendEvent(m);
      }
    }),
  );
}

/**
 * What the root received per leaf: checks that, duplicates aside, each leaf's sequence is
 * exactly 0..n-1 in order; returns the number of duplicates.
 */
async function checkArrived(root: EdgeHub, n: number): Promise<number> {
  const events = await rootEvents(root);
  let duplicates = 0;
  for (const leaf of LEAVES) {
    const seqs = events.filter((m) => m.properties["$.cdid"] === leaf).map((m) => Number(m.properties.seq));
    const firsts: number[] = [];
    const seen = new Set<number>();
    for (const s of seqs) {
      if (seen.has(s)) duplicates++;
      else {
        seen.add(s);
        firsts.push(s);
      }
    }
    expect(firsts, leaf).toEqual(Array.from({ length: n }, (_, i) => i));
  }
  return duplicates;
}

async function allArrived(root: EdgeHub, n: number): Promise<boolean> {
  const events = await rootEvents(root);
  return LEAVES.every(
    (leaf) =>
      new Set(events.filter((m) => m.properties["$.cdid"] === leaf).map((m) => m.properties.seq)).size >= n,
  );
}

async function openLeaves(gateway: Gateway, keys: Map<string, string>): Promise<Map<string, Client>> {
  const clients = new Map<string, Client>();
  for (const leaf of LEAVES) {
    const c = await childClient(gateway, leaf, keys.get(leaf) ?? "");
    await c.open();
    clients.set(leaf, c);
  }
  return clients;
}

async function closeLeaves(clients: Map<string, Client>): Promise<void> {
  await Promise.all([...clients.values()].map((c) => c.close()));
}

describe("store and forward through outages", () => {
  it("keeps children sending while the parent is down and across an offline restart of the edge, then delivers everything in order", async () => {
    const rootDir = await tempDir();
    const rootPorts = { mqtts: await freePort(), https: await freePort() };
    let root = await startRoot(rootDir, { listen: { host: "127.0.0.1", ...rootPorts } });
    const parent = await edgeIdentity(root, "edge1");
    const keys = new Map<string, string>();
    for (const leaf of LEAVES) keys.set(leaf, await childOf(root, "edge1", leaf));
    const edgeDir = await tempDir();
    const edgePort = await freePort();
    const config = {
      hostname: "127.0.0.1",
      dataDir: join(edgeDir, "data"),
      listen: { host: "127.0.0.1", mqtts: edgePort, https: await freePort() },
      parent: { ...parent, keepaliveSecs: 2, ackTimeoutMs: 2000 },
    };
    let edge = await hubProcess(edgeDir, config);
    await edge.waitFor(/"scope-synced"/);
    const gateway = { port: edgePort, ca: readFileSync(join(edgeDir, "data/certs/ca.pem"), "utf8") };

    let clients = await openLeaves(gateway, keys);
    await sendRange(clients, 0, 10);
    await eventually("the first 10 of each at the root", () => allArrived(root, 10));

    // The parent goes away: children keep sending, acknowledged by the edge alone.
    await stopHub(root);
    await sendRange(clients, 10, 20);
    await closeLeaves(clients);

    // The edge restarts while offline: it starts from its data dir, and children log in
    // against its cached scope.
    expect(await edge.stop("SIGTERM")).toBe(0);
    edge = await hubProcess(edgeDir, config);
    clients = await openLeaves(gateway, keys);
    await sendRange(clients, 20, 30);

    // The parent returns on the same address.
    root = await startRoot(rootDir, { listen: { host: "127.0.0.1", ...rootPorts } });
    const t0 = Date.now();
    await eventually("all 30 of each at the root", () => allArrived(root, 30));
    const drainMs = Date.now() - t0;
    const duplicates = await checkArrived(root, 30);
    console.log(`parent back -> 60 stored messages delivered in ${drainMs} ms (${duplicates} duplicates)`);
    expect(duplicates).toBeLessThanOrEqual(LEAVES.length * 100);
    await closeLeaves(clients);
  });

  it("notices a black-holed route by its silence, and resumes when the route returns", async () => {
    const root = await startRoot(await tempDir());
    const proxy = await BlackholeProxy.start(root.ports.mqtts);
    const parent: ParentConfigInput = {
      ...(await edgeIdentity(root, "edge1")),
      port: proxy.port,
      keepaliveSecs: 1,
      ackTimeoutMs: 1000,
    };
    const keys = new Map<string, string>();
    for (const leaf of LEAVES) keys.set(leaf, await childOf(root, "edge1", leaf));
    const edgeDir = await tempDir();
    const edgePort = await freePort();
    const edge = await hubProcess(edgeDir, {
      hostname: "127.0.0.1",
      dataDir: join(edgeDir, "data"),
      listen: { host: "127.0.0.1", mqtts: edgePort, https: 0 },
      parent,
    });
    await edge.waitFor(/"scope-synced"/);
    const clients = await openLeaves(
      { port: edgePort, ca: readFileSync(join(edgeDir, "data/certs/ca.pem"), "utf8") },
      keys,
    );
    await sendRange(clients, 0, 5);
    await eventually("the first 5 of each at the root", () => allArrived(root, 5));

    proxy.blackhole();
    await sendRange(clients, 5, 25);
    await edge.waitFor(/"upstream-link-(down|stalled)"/, 10_000);
    const before = (await rootEvents(root)).length;
    proxy.restore();
    const t0 = Date.now();
    await eventually("all 25 of each at the root", () => allArrived(root, 25));
    console.log(
      `route back -> ${(await rootEvents(root)).length - before} messages delivered in ${Date.now() - t0} ms`,
    );
    await checkArrived(root, 25);
    await closeLeaves(clients);
  });
});
