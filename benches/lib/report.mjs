// Printing and saving benchmark results: every figure with its workload, and ratios of
// edgehub to each peer measured in the same run.
import { mkdirSync, writeFileSync } from "node:fs";
import { arch, cpus, platform, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export function machine() {
  return {
    platform: `${platform()}-${arch()}`,
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

export function fmt(n) {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(1);
}

/**
 * Where results go: benches/results (what docs/benchmarks.md is rendered from), or
 * `BENCH_RESULTS_DIR` (the quick check writes there, leaving the full runs' figures alone).
 */
export function resultsDir() {
  return process.env.BENCH_RESULTS_DIR ?? fileURLToPath(new URL("../results", import.meta.url));
}

/** Saves `{ benchmark, machine, date, ...data }` to `<resultsDir>/<name>.json`. */
export function save(name, data) {
  mkdirSync(resultsDir(), { recursive: true });
  const file = join(resultsDir(), `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ benchmark: name, date: new Date().toISOString(), machine: machine(), ...data }, null, 2)}\n`,
  );
  console.log(`saved ${file}`);
}

/** Prints rows as an aligned table. */
export function table(rows) {
  if (rows.length === 0) return;
  const cols = Object.keys(rows[0]);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (cells) => cells.map((c, i) => String(c).padEnd(width[i])).join("  ");
  console.log(line(cols));
  for (const r of rows) console.log(line(cols.map((c) => r[c])));
}
