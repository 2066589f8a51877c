// The service query parser against whitespace runs (issue 14: 40k spaces took 1.5 s when
// regexes backtracked over them). Prints ms per parse for growing runs; linear time keeps
// the ms per 10k characters flat. Runs dist/: `npm run build:ts && node benches/query.bench.mjs`.
import { parseQuery } from "../dist/service/query.js";

const shapes = {
  "padded AND": (pad) => `SELECT * FROM devices WHERE a = 1${pad}AND b = 2${pad}`,
  "unterminated WHERE": (pad) => `SELECT * FROM devices WHERE${pad}x`,
  "trailing run": (pad) => `SELECT * FROM devices${pad}`,
};
for (const [name, make] of Object.entries(shapes)) {
  for (const n of [10_000, 40_000, 160_000, 640_000]) {
    const query = make(" ".repeat(n));
    const start = process.hrtime.bigint();
    try {
      parseQuery(query);
    } catch {
      // Refusals are timed too: a refused query must be as cheap as an accepted one.
    }
    const ms = Number(process.hrtime.bigint() - start) / 1e6;
    process.stdout.write(`${name.padEnd(20)} ${String(n).padStart(7)} spaces: ${ms.toFixed(2)} ms\n`);
  }
}
