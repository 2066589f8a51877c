// Backlog benchmarks: open time of a store holding 1M messages against an empty one
// (persisted counters: no scan on open), and peak RSS while holding the backlog and
// appending durably — edgehub beside classic-level in this run.
//
//   npm run build && node benches/backlog.bench.mjs      (BENCH_QUICK=1: 200k messages)
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import b from "benny";
import { edgehubPeer, levelPeer } from "./lib/peers.mjs";
import { fmt, save, table } from "./lib/report.mjs";

const QUICK = process.env.BENCH_QUICK === "1";
const N = QUICK ? 200_000 : 1_000_000;
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-backlog-"));
const dir = (n) => join(root, n);
const body = Buffer.alloc(256, 1);

async function fill(make, path, opts) {
  const p = await make(path, opts);
  for (let i = 0; i < N; i += 1000) await p.append("backlog", Array(1000).fill(body));
  await p.close();
}

try {
  console.log(`filling ${N} x 256 B into edgehub and classic-level...`);
  await fill(edgehubPeer, dir("eh-backlog"), { durability: "wal" });
  await fill(levelPeer, dir("lv-backlog"), { sync: false });
  await (await edgehubPeer(dir("eh-empty"))).close();
  await (await levelPeer(dir("lv-empty"))).close();

  // benny calls each case once when it is added, without awaiting it; chain the calls
  // so two opens of one store never overlap (the second would find it locked).
  let chain = Promise.resolve();
  const open = (make, path) => () => {
    chain = chain.then(async () => {
      const p = await make(path);
      await p.close();
    });
    return chain;
  };
  const summary = await b.suite(
    `open + close, empty vs ${N} message backlog`,
    b.add("edgehub empty", open(edgehubPeer, dir("eh-empty"))),
    b.add("edgehub backlog", open(edgehubPeer, dir("eh-backlog"))),
    b.add("classic-level empty", open(levelPeer, dir("lv-empty"))),
    b.add("classic-level backlog", open(levelPeer, dir("lv-backlog"))),
    b.configure({ cases: QUICK ? { minSamples: 3, maxTime: 0.5 } : { minSamples: 10, maxTime: 2 } }),
    b.cycle(),
  );
  const ms = Object.fromEntries(summary.results.map((r) => [r.name, r.details.mean * 1000]));
  const openRows = ["edgehub", "classic-level"].map((peer) => ({
    peer,
    emptyMs: +ms[`${peer} empty`].toFixed(2),
    backlogMs: +ms[`${peer} backlog`].toFixed(2),
    ratio: +(ms[`${peer} backlog`] / ms[`${peer} empty`]).toFixed(2),
  }));
  console.log(`\nopen + close time, ms (backlog of ${N} x 256 B)`);
  table(openRows);

  const run = promisify(execFile);
  const seconds = QUICK ? 3 : 10;
  const rssRows = [];
  for (const [peer, path] of [
    ["edgehub", dir("eh-backlog")],
    ["classic-level", dir("lv-backlog")],
  ]) {
    const child = new URL("./lib/rss-child.mjs", import.meta.url).pathname;
    const { stdout } = await run(process.execPath, [child, peer, path, String(seconds)]);
    const r = JSON.parse(stdout);
    rssRows.push({
      peer,
      peakRssMB: +(r.peakRssBytes / 2 ** 20).toFixed(1),
      openedRssMB: +(r.openedRssBytes / 2 ** 20).toFixed(1),
      appendedPerSec: Math.round(r.appended / seconds),
    });
  }
  console.log(`\nRSS holding ${N} x 256 B and appending durably (32 callers x 10/call, ${seconds} s)`);
  table(rssRows.map((r) => ({ ...r, appendedPerSec: fmt(r.appendedPerSec) })));
  save("store-backlog", {
    workload: `${N} x 256 B backlog; open+close time; RSS while appending for ${seconds} s`,
    open: openRows,
    rss: rssRows,
  });
} finally {
  rmSync(root, { recursive: true, force: true });
}
