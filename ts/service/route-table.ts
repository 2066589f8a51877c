/**
 * A literal route table for the service API: rows of (method, path pattern, …) matched in
 * order against a request's decoded path segments. A pattern is segments separated by `/`;
 * `:name` takes any one segment, everything else must be equal. No regular expressions, no
 * precedence rules: the first row that matches wins, so a row reads top to bottom.
 */

/** What a row must have: the HTTP method and the path pattern, e.g. `/devices/:id/modules`. */
export interface RoutePattern {
  method: string;
  path: string;
}

/** The segments captured by a row's `:name`s. */
export interface RouteParams {
  /** The segment `:name` took; throws if the row has no such name (a programming error). */
  get(name: string): string;
  /** The segment `:name` took, or undefined when the row has no `:name`. */
  optional(name: string): string | undefined;
}

/** One segment of a compiled pattern: a literal, or a named capture. */
type Segment = { literal: string } | { capture: string };

function compile(path: string): Segment[] {
  return path
    .split("/")
    .filter(Boolean)
    .map((s) => (s.startsWith(":") ? { capture: s.slice(1) } : { literal: s }));
}

function paramsOf(captured: Map<string, string>, path: string): RouteParams {
  return {
    get(name) {
      const v = captured.get(name);
      if (v === undefined) throw new Error(`route ${path} has no :${name}`);
      return v;
    },
    optional: (name) => captured.get(name),
  };
}

/** Rows compiled once, matched in their order. */
export class RouteTable<R extends RoutePattern> {
  readonly #rows: ReadonlyArray<{ row: R; segments: Segment[] }>;

  constructor(rows: readonly R[]) {
    this.#rows = rows.map((row) => ({ row, segments: compile(row.path) }));
  }

  /**
   * The first row for `method` whose pattern matches `parts` (decoded path segments) and
   * that `accepts` takes, with what its `:name`s captured; undefined when none does.
   */
  match(
    method: string,
    parts: readonly string[],
    accepts: (row: R) => boolean = () => true,
  ): { row: R; params: RouteParams } | undefined {
    for (const { row, segments } of this.#rows) {
      if (row.method !== method || segments.length !== parts.length) continue;
      // Captures come from the wire: a Map, so a segment named like a prototype key is data.
      const captured = new Map<string, string>();
      const hit = segments.every((s, i) => {
        const part = parts[i] as string;
        if ("literal" in s) return s.literal === part;
        captured.set(s.capture, part);
        return true;
      });
      if (hit && accepts(row)) return { row, params: paramsOf(captured, row.path) };
    }
    return undefined;
  }
}
