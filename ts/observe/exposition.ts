/**
 * Prometheus' text exposition format (version 0.0.4), written directly: the hub's metrics are
 * a fixed, small set, and a client library cost about 3.5 MB of resident memory on every
 * start (`benches/rss.bench.mjs`) for what is a few dozen lines of text per scrape.
 *
 * Format: https://prometheus.io/docs/instrumenting/exposition_formats/ — per family a
 * `# HELP` and a `# TYPE` line, then one `name{label="value",…} number` line per sample.
 */

/** The content type of the text format. */
export const EXPOSITION_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** One sample: its labels in order (name, value pairs) and its value. */
export interface Sample {
  labels?: readonly (readonly [string, string])[];
  /** Appended to the family's name (a histogram's `_bucket`, `_sum`, `_count`). */
  suffix?: string;
  value: number;
}

/** A metric family as scraped. */
export interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: readonly Sample[];
}

// Escapes as the format asks: in HELP backslash and newline, in label values also the quote.
const escapeHelp = (s: string) => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (s: string) => escapeHelp(s).replace(/"/g, '\\"');

function number(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

/** The text of `families`, in order. */
export function expose(families: readonly Family[]): string {
  let out = "";
  for (const f of families) {
    out += `# HELP ${f.name} ${escapeHelp(f.help)}\n# TYPE ${f.name} ${f.type}\n`;
    for (const s of f.samples) {
      const labels = s.labels?.length
        ? `{${s.labels.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",")}}`
        : "";
      out += `${f.name}${s.suffix ?? ""}${labels} ${number(s.value)}\n`;
    }
  }
  return out;
}

/** A histogram with fixed upper bounds, observed on the hot path: one array walk per observation. */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.#counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    this.#sum += v;
    this.#count++;
    const i = this.#bounds.findIndex((b) => v <= b);
    if (i >= 0) this.#counts[i] = (this.#counts[i] ?? 0) + 1;
  }

  /** Cumulative `_bucket` samples (with `+Inf`), `_sum` and `_count`. */
  samples(): Sample[] {
    let cumulative = 0;
    const out: Sample[] = this.#bounds.map((b, i) => {
      cumulative += this.#counts[i] ?? 0;
      return { suffix: "_bucket", labels: [["le", number(b)]], value: cumulative };
    });
    out.push({ suffix: "_bucket", labels: [["le", "+Inf"]], value: this.#count });
    out.push({ suffix: "_sum", value: this.#sum }, { suffix: "_count", value: this.#count });
    return out;
  }
}
