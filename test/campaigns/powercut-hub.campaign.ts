/**
 * Power cuts under an edge hub: its dataDir on LazyFS, its uplink cut (everything it
 * acknowledges stays in its store), devices publish QoS 1 and count PUBACKs; SIGKILL, LazyFS
 * drops every unsynced byte, the hub restarts, the uplink returns, and every acknowledged
 * message must reach the parent. The same run with the hub's fsyncs turned into no-ops
 * (libeatmydata preloaded: the hub has no `durability` setting of its own) must lose
 * acknowledged messages, or this test could not see a missing fsync.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { rootEvents } from "../helpers/edge.js";
import { type LazyFs, mountLazyFs, NO_FUSE } from "../helpers/lazyfs.js";
import { connectedRaw, publishSeq } from "../helpers/mqtt-raw.js";
import { hubProcess } from "../helpers/process.js";
import { site } from "../helpers/site.js";

const DEVICES = ["pc-0", "pc-1", "pc-2", "pc-3"];
/** PUBACKs (all devices) before the kill. */
const ACKED_BEFORE_KILL = 400;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** libeatmydata (Debian's eatmydata): fsync, fdatasync and sync_file_range become no-ops. */
function eatmydata(): string {
  const found = /\s(\S*libeatmydata\.so\S*)$/m.exec(spawnSync("ldconfig", ["-p"]).stdout?.toString() ?? "");
  if (!found?.[1]) throw new Error("libeatmydata is missing: apt-get install eatmydata (.ci/run does)");
  return found[1];
}

/** Seqs of each device at the root. */
async function atRoot(root: EdgeHub): Promise<Map<string, Set<number>>> {
  const out = new Map<string, Set<number>>(DEVICES.map((d) => [d, new Set()]));
  for (const m of await rootEvents(root))
    out.get(m.properties["$.cdid"] ?? "")?.add(Number(m.properties.seq));
  return out;
}

const count = (got: Map<string, Set<number>>) => [...got.values()].reduce((n, seqs) => n + seqs.size, 0);

interface Outcome {
  acked: number;
  delivered: number;
  /** Acknowledged seqs (device:seq) not at the root once the drain is over. */
  missing: string[];
}

/**
 * One power cut under an edge hub whose data is on `fs`, started with `env` added. With
 * `settleFirstStart`, what the first start wrote reaches the disk before the messages flow
 * (as the kernel's writeback would, given time): for the control run, whose fsyncs do
 * nothing, so that what it loses is messages, not its key file.
 */
async function powerCut(fs: LazyFs, env: Record<string, string>, settleFirstStart = false): Promise<Outcome> {
  const s = await site({}, true, { devices: DEVICES, dataDir: join(fs.mnt, "data"), env });
  const { root, proxy } = s;
  if (!proxy) throw new Error("the site has no relay");
  proxy.cut();
  if (settleFirstStart) await fs.checkpoint();

  const acked = new Map<string, number[]>(DEVICES.map((d) => [d, []]));
  let total = 0; // PUBACKs, all devices
  let killed = false;
  const publishing = DEVICES.map(async (d) => {
    const c = await connectedRaw(s.gateway.port, s.gateway.ca, d, s.keys.get(d) ?? "");
    for (let seq = 0; !killed; seq++) {
      if (!(await publishSeq(c, d, seq).catch(() => false))) break;
      acked.get(d)?.push(seq);
      total++;
    }
    c.end();
  });
  while (total < ACKED_BEFORE_KILL) await sleep(5);
  await sleep(Math.random() * 20);
  killed = true;
  await s.edge.stop("SIGKILL");
  await Promise.all(publishing);
  await fs.clearCache();

  proxy.restore();
  const edge = await hubProcess(s.edgeDir, s.config, env);
  await edge.waitFor(/"upstream-link-up"/);
  const missingAt = (got: Map<string, Set<number>>) =>
    [...acked].flatMap(([d, seqs]) => seqs.filter((q) => !got.get(d)?.has(q)).map((q) => `${d}:${q}`));
  // Until every acknowledged message is at the root, or nothing new came for 3 s.
  let got = await atRoot(root);
  for (let seen = -1, quietSince = Date.now(); Date.now() - quietSince < 3000; await sleep(100)) {
    got = await atRoot(root);
    if (missingAt(got).length === 0) break;
    const n = count(got);
    if (n !== seen) {
      seen = n;
      quietSince = Date.now();
    }
  }
  await edge.stop("SIGKILL");
  return { acked: total, delivered: count(got), missing: missingAt(got) };
}

describe.skipIf(NO_FUSE)("power cuts under an edge hub (LazyFS)", () => {
  it("starts again after a power cut right after its first start: its key file, certificates and synced children survive", async () => {
    // No checkpoint: only what the hub fsynced itself is on disk after the cut.
    const fs = await mountLazyFs();
    const s = await site({}, true, { devices: ["first-0"], dataDir: join(fs.mnt, "data") });
    s.proxy?.cut();
    await s.edge.stop("SIGKILL");
    await fs.clearCache();
    // Offline: the child logs in from the synced (sealed) identities, over the same CA.
    const edge = await hubProcess(s.edgeDir, s.config);
    await edge.waitFor(/"hub-started"/);
    const c = await connectedRaw(s.gateway.port, s.gateway.ca, "first-0", s.keys.get("first-0") ?? "");
    expect(await publishSeq(c, "first-0", 0)).toBe(true);
    c.end();
    await edge.stop("SIGKILL");
  }, 120_000);

  it("delivers every message it acknowledged to the parent after SIGKILL, a dropped cache and a restart", async () => {
    const r = await powerCut(await mountLazyFs(), {});
    console.log(
      `edge hub, fsync: ${r.acked} acknowledged, ${r.delivered} at the parent, ${r.missing.length} missing`,
    );
    expect(r.acked).toBeGreaterThanOrEqual(ACKED_BEFORE_KILL);
    expect(r.missing).toEqual([]);
  }, 120_000);

  it("loses acknowledged messages when its fsyncs do nothing (the check above can fail)", async () => {
    const r = await powerCut(await mountLazyFs(), { LD_PRELOAD: eatmydata() }, true);
    console.log(
      `edge hub, fsync a no-op: ${r.acked} acknowledged, ${r.delivered} at the parent, ${r.missing.length} missing`,
    );
    expect(r.acked).toBeGreaterThanOrEqual(ACKED_BEFORE_KILL);
    expect(r.missing.length).toBeGreaterThan(0);
  }, 120_000);
});
