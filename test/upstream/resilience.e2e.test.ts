import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Client, Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { childClient, childOf, edgeIdentity, type Gateway, rootEvents, startRoot } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { freePort, type HubProcess, hubProcess } from "../helpers/process.js";
import { BlackholeProxy } from "../helpers/proxy.js";

const LEAVES = ["leaf-a", "leaf-b", "leaf-c"];

interface Site {
  rootDir: string;
  rootListen: { host: string; mqtts: number; https: number };
  root: EdgeHub;
  edgeDir: string;
  config: Record<string, unknown>;
  edge: HubProcess;
  gateway: Gateway;
  keys: Map<string, string>;
}

/** A root, an edge process under it (parent reached at `parentPort` if given) and three children. */
async function site(
  parentExtra: Record<string, unknown> = {},
  viaProxy = false,
): Promise<Site & { proxy?: BlackholeProxy }> {
  const rootDir = await tempDir();
  const rootListen = { host: "127.0.0.1", mqtts: await freePort(), https: await freePort() };
  const root = await startRoot(rootDir, { listen: rootListen });
  const proxy = viaProxy ? await BlackholeProxy.start(rootListen.mqtts) : undefined;
  const parent = {
    ...(await edgeIdentity(root, "edge1")),
    keepaliveSecs: 2,
    ackTimeoutMs: 2000,
    ...parentExtra,
  };
  if (proxy) parent.port = proxy.port;
  const keys = new Map<string, string>();
  for (const leaf of LEAVES) keys.set(leaf, await childOf(root, "edge1", leaf));
  const edgeDir = await tempDir();
  const edgePort = await freePort();
  const config = {
    hostname: "127.0.0.1",
    dataDir: join(edgeDir, "data"),
    listen: { host: "127.0.0.1", mqtts: edgePort, https: await freePort() },
    parent,
  };
  const edge = await hubProcess(edgeDir, config);
  await edge.waitFor(/"scope-synced"/);
  const gateway = { port: edgePort, ca: readFileSync(join(edgeDir, "data/certs/ca.pem"), "utf8") };
  return { rootDir, rootListen, root, edgeDir, config, edge, gateway, keys, ...(proxy ? { proxy } : {}) };
}

async function openLeaves(s: Site): Promise<Client[]> {
  const out: Client[] = [];
  for (const leaf of LEAVES) {
    const c = await childClient(s.gateway, leaf, s.keys.get(leaf) ?? "");
    await c.open();
    out.push(c);
  }
  return out;
}

/** Sends seq from..to-1 from each client with up to 16 in flight (kept in order on the connection). */
async function send(clients: Client[], from: number, to: number): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      const inflight = new Set<Promise<unknown>>();
      for (let i = from; i < to; i++) {
        const m = new Message(`payload ${i}`);
        m.properties.add("seq", String(i));
        const p = c.sendEvent(m).finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size >= 16) await Promise.race(inflight);
      }
      await Promise.all(inflight);
    }),
  );
}

/** Seqs per leaf at the root, duplicates aside, must be 0..n-1 in order; returns the duplicates. */
async function delivered(root: EdgeHub): Promise<{ firsts: Map<string, number[]>; duplicates: number }> {
  const firsts = new Map<string, number[]>(LEAVES.map((l) => [l, []]));
  const seen = new Set<string>();
  let duplicates = 0;
  for (const m of await rootEvents(root)) {
    const key = `${m.properties["$.cdid"]}:${m.properties.seq}`;
    if (seen.has(key)) duplicates++;
    else {
      seen.add(key);
      firsts.get(m.properties["$.cdid"] ?? "")?.push(Number(m.properties.seq));
    }
  }
  return { firsts, duplicates };
}

async function expectAll(root: EdgeHub, n: number): Promise<number> {
  await eventually(`${n} of each at the root`, async () => {
    const { firsts } = await delivered(root);
    return [...firsts.values()].every((f) => f.length >= n);
  });
  const { firsts, duplicates } = await delivered(root);
  for (const [leaf, f] of firsts) expect(f, leaf).toEqual(Array.from({ length: n }, (_, i) => i));
  return duplicates;
}

describe("store and forward resilience", () => {
  it("goes through five offline/online cycles in a row without losing or reordering anything", async () => {
    const s = await site();
    const clients = await openLeaves(s);
    let root = s.root;
    for (let cycle = 0; cycle < 5; cycle++) {
      await stopHub(root);
      await send(clients, cycle * 40, cycle * 40 + 20);
      root = await startRoot(s.rootDir, { listen: s.rootListen });
      await send(clients, cycle * 40 + 20, cycle * 40 + 40);
      await expectAll(root, cycle * 40 + 40);
    }
  });

  it("loses nothing to a SIGKILL of the edge hub in the middle of a drain", async () => {
    // A capped drain rate keeps the drain going long enough to be interrupted.
    const s = await site({ maxMessagesPerSec: 1500 });
    await stopHub(s.root);
    const clients = await openLeaves(s);
    await send(clients, 0, 1500);
    await Promise.all(clients.map((c) => c.close()));
    const root = await startRoot(s.rootDir, { listen: s.rootListen });
    await eventually("the drain under way", async () => (await rootEvents(root)).length > 500);
    await s.edge.stop("SIGKILL");
    const partial = (await rootEvents(root)).length;
    expect(partial).toBeLessThan(4500);
    await hubProcess(s.edgeDir, s.config);
    const duplicates = await expectAll(root, 1500);
    console.log(
      `SIGKILL after ${partial} of 4500 forwarded: all delivered after restart, ${duplicates} duplicates`,
    );
  });

  it("rides a link flapping every second for a minute: no loss, bounded duplicates, flat memory", async () => {
    const s = await site({ maxBackoffMs: 200 }, true);
    const proxy = s.proxy as BlackholeProxy;
    const clients = await openLeaves(s);
    let flapping = true;
    let flaps = 0;
    const flapper = (async () => {
      while (flapping) {
        await new Promise((r) => setTimeout(r, 1000));
        if (flaps % 2 === 0) proxy.cut();
        else proxy.restore();
        flaps++;
      }
      proxy.restore();
    })();
    const rss: number[] = [];
    const sampler = setInterval(() => rss.push(s.edge.rssBytes()), 5000);
    let sent = 0;
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      await send(clients, sent, sent + 50);
      sent += 50;
      await new Promise((r) => setTimeout(r, 50));
    }
    flapping = false;
    await flapper;
    clearInterval(sampler);
    const duplicates = await expectAll(s.root, sent);
    const mb = (b: number) => Math.round(b / 2 ** 20);
    console.log(
      `flapping: ${flaps} flaps, ${sent * LEAVES.length} messages, ${duplicates} duplicates, edge RSS ${rss.map(mb).join(" ")} MB`,
    );
    expect(duplicates).toBeLessThanOrEqual(flaps * LEAVES.length * 100);
    // Flat: the last samples are within 40 MB of the first ones after warm-up.
    expect(Math.max(...rss.slice(-3))).toBeLessThan((rss[1] ?? 0) + 40 * 2 ** 20);
  }, 120_000);
});
