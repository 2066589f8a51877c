/**
 * A site for store-and-forward tests: a root hub (fixed ports, so it can come back), an
 * edge hub process under it (optionally through a relay that can cut or black-hole the
 * route), and three official-SDK children; with senders of numbered messages and the
 * check that the root got them all, in order per child.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type Client, Message } from "azure-iot-device";
import { expect } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { childClient, childOf, edgeIdentity, type Gateway, rootEvents, startRoot } from "./edge.js";
import { eventually, tempDir } from "./fixtures.js";
import { stopHub } from "./hub.js";
import { fixedListen, freePort, type HubProcess, hubProcess } from "./process.js";
import { BlackholeProxy } from "./proxy.js";

export const LEAVES = ["leaf-a", "leaf-b", "leaf-c"];

export interface Site {
  rootDir: string;
  rootListen: { host: string; mqtts: number; https: number; amqps: number | false };
  root: EdgeHub;
  edgeDir: string;
  config: Record<string, unknown>;
  edge: HubProcess;
  gateway: Gateway;
  keys: Map<string, string>;
}

/** Variations of a {@link site}. */
export interface SiteOptions {
  /** The edge's children, registered before it syncs its scope (default: the three {@link LEAVES}). */
  devices?: string[];
  /** The edge's data directory (default: `data` in its temp dir). */
  dataDir?: string;
  /** Added to the edge process's environment. */
  env?: Record<string, string>;
}

/** A root, an edge process under it (through a relay if `viaProxy`) and its children. */
export async function site(
  parentExtra: Record<string, unknown> = {},
  viaProxy = false,
  { devices = LEAVES, dataDir, env = {} }: SiteOptions = {},
): Promise<Site & { proxy?: BlackholeProxy }> {
  const rootDir = await tempDir();
  const rootListen = await fixedListen();
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
  for (const leaf of devices) keys.set(leaf, await childOf(root, "edge1", leaf));
  const edgeDir = await tempDir();
  const edgePort = await freePort();
  const config = {
    hostname: "127.0.0.1",
    dataDir: dataDir ?? join(edgeDir, "data"),
    listen: { host: "127.0.0.1", mqtts: edgePort, https: await freePort(), amqps: false as const },
    parent,
  };
  const edge = await hubProcess(edgeDir, config, env);
  await edge.waitFor(/"scope-synced"/);
  const gateway = { port: edgePort, ca: readFileSync(join(config.dataDir, "certs/ca.pem"), "utf8") };
  return { rootDir, rootListen, root, edgeDir, config, edge, gateway, keys, ...(proxy ? { proxy } : {}) };
}

export async function openLeaves(s: Site): Promise<Client[]> {
  const out: Client[] = [];
  for (const leaf of LEAVES) {
    const c = await childClient(s.gateway, leaf, s.keys.get(leaf) ?? "");
    await c.open();
    out.push(c);
  }
  return out;
}

/**
 * Sends seq from..to-1 from each client with up to 16 in flight (kept in order on the
 * connection); `messageId` gives a message's `$.mid` (none if absent, or if it gives undefined).
 */
export async function send(
  clients: Client[],
  from: number,
  to: number,
  messageId?: (seq: number) => string | undefined,
): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      const inflight = new Set<Promise<unknown>>();
      for (let i = from; i < to; i++) {
        const m = new Message(`payload ${i}`);
        m.properties.add("seq", String(i));
        const mid = messageId?.(i);
        if (mid !== undefined) m.messageId = mid;
        const p = c.sendEvent(m).finally(() => inflight.delete(p));
        inflight.add(p);
        if (inflight.size >= 16) await Promise.race(inflight);
      }
      await Promise.all(inflight);
    }),
  );
}

/** Seqs per leaf at the root, duplicates aside, must be 0..n-1 in order; returns the duplicates. */
export async function delivered(
  root: EdgeHub,
): Promise<{ firsts: Map<string, number[]>; duplicates: number }> {
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

export async function expectAll(root: EdgeHub, n: number): Promise<number> {
  await eventually(`${n} of each at the root`, async () => {
    const { firsts } = await delivered(root);
    return [...firsts.values()].every((f) => f.length >= n);
  });
  const { firsts, duplicates } = await delivered(root);
  for (const [leaf, f] of firsts) expect(f, leaf).toEqual(Array.from({ length: n }, (_, i) => i));
  return duplicates;
}

/**
 * Builds a backlog of `n` messages per leaf while the root is down (with `messageId`, as
 * {@link send}), then restarts the root and returns it once more than `forwarded` messages
 * reached it.
 */
export async function drainUnderWay(
  s: Site,
  n: number,
  forwarded: number,
  messageId?: (seq: number) => string | undefined,
): Promise<EdgeHub> {
  await stopHub(s.root);
  const clients = await openLeaves(s);
  await send(clients, 0, n, messageId);
  await Promise.all(clients.map((c) => c.close()));
  const root = await startRoot(s.rootDir, { listen: s.rootListen });
  await eventually("the drain under way", async () => (await rootEvents(root)).length > forwarded);
  return root;
}
