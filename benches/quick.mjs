// The quick check of the footprint: ingest, drain and module to module with small counts
// (about three minutes on 2 cores), then edgehub's CPU-seconds per million messages and its
// RSS as ratios to Mosquitto 2.0 measured in the same run, beside issue 13's aims. Figures
// go to a temporary directory, not benches/results (the full runs render docs/benchmarks.md).
//
//   npm run bench:quick            (builds the TypeScript first)
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { table } from "./lib/report.mjs";

const out = mkdtempSync(join(tmpdir(), "edgehub-quick-"));
const env = { ...process.env, BENCH_RESULTS_DIR: out };
const here = new URL(".", import.meta.url).pathname;

/** Runs one benchmark with `extra` settings; its figures are read back from `out`. */
function run(script, extra) {
  console.log(
    `\n== ${script} ${Object.entries(extra)
      .map(([k, v]) => `${k}=${v}`)
      .join(" ")}`,
  );
  const r = spawnSync(process.execPath, [join(here, script)], {
    env: { ...env, ...extra },
    stdio: "inherit",
  });
  if (r.status !== 0) throw new Error(`${script} failed (${r.status ?? r.signal})`);
  return JSON.parse(readFileSync(join(out, `${script.split(".")[0]}.json`), "utf8"));
}

const ratio = (a, b) => (a == null || b == null || b === 0 ? null : +(a / b).toFixed(2));

try {
  const ingest = run("ingest.bench.mjs", {
    BENCH_QUICK: "1",
    BENCH_COUNTS: "10,100",
    BENCH_BROKERS: "edgehub,edgehub-wal,mosquitto",
  });
  const drain = run("drain.bench.mjs", { BENCH_MESSAGES: "100000", BENCH_KILL_MESSAGES: "10000" });
  const modules = run("modules.bench.mjs", { BENCH_SECONDS: "3" });

  const rows = [];
  const find = (list, pred) => list.find(pred);
  for (const r of ingest.rows.filter((x) => x.broker === "mosquitto")) {
    for (const hub of ["edgehub", "edgehub-wal"]) {
      const e = find(
        ingest.rows,
        (x) => x.broker === hub && x.clients === r.clients && x.inFlight === r.inFlight,
      );
      if (!e) continue;
      rows.push({
        figure: `ingest CPU-s/M, ${r.clients} clients x ${r.inFlight} in flight (${hub})`,
        edgehub: e.cpuSecPerMillion,
        mosquitto: r.cpuSecPerMillion,
        ratio: ratio(e.cpuSecPerMillion, r.cpuSecPerMillion),
        aim: r.inFlight === 1 ? "<= 2" : "<= 1.3",
      });
    }
  }
  const bridge = find(drain.rows, (x) => x.broker === "mosquitto");
  for (const hub of ["edgehub", "edgehub-wal"]) {
    const e = find(drain.rows, (x) => x.broker === hub);
    if (!e || !bridge) continue;
    const perM = (row) => +((row.brokerCpuSec / row.messages) * 1e6).toFixed(1);
    rows.push({
      figure: `drain CPU-s/M at the edge (${hub})`,
      edgehub: perM(e),
      mosquitto: perM(bridge),
      ratio: ratio(perM(e), perM(bridge)),
      aim: "<= 1.3",
    });
  }
  const edge = find(drain.rows, (x) => x.broker === "edgehub");
  if (edge && bridge) {
    rows.push({
      figure: "RSS after start, edge hub (MB)",
      edgehub: edge.restRssMB,
      mosquitto: bridge.restRssMB,
      ratio: ratio(edge.restRssMB, bridge.restRssMB),
      aim: "edgehub <= 57 MB",
    });
    rows.push({
      figure: "first message at the parent after it listens (ms)",
      edgehub: edge.resumeMs,
      mosquitto: bridge.resumeMs,
      ratio: ratio(edge.resumeMs, bridge.resumeMs),
      aim: "edgehub < 500 ms",
    });
  }
  const m2m = find(modules.rows, (x) => x.broker === "edgehub");
  const m2mPeer = find(modules.rows, (x) => x.broker === "mosquitto");
  if (m2m && m2mPeer)
    rows.push({
      figure: "module to module CPU-s/M",
      edgehub: m2m.cpuSecPerMillion,
      mosquitto: m2mPeer.cpuSecPerMillion,
      ratio: ratio(m2m.cpuSecPerMillion, m2mPeer.cpuSecPerMillion),
      aim: "",
    });
  const lost = [...drain.rows, ...drain.kill].filter((x) => x.broker.startsWith("edgehub") && x.missing > 0);
  console.log("\nquick footprint check: edgehub / Mosquitto in this run");
  table(
    rows.map((r) => ({
      ...r,
      edgehub: r.edgehub ?? "-",
      mosquitto: r.mosquitto ?? "-",
      ratio: r.ratio ?? "-",
    })),
  );
  if (lost.length > 0) {
    console.error(
      `FAIL: acknowledged messages missing at the parent: ${lost.map((r) => `${r.broker} ${r.missing}`).join(", ")}`,
    );
    process.exitCode = 1;
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
