/**
 * The part of IoT Hub's query language the service API answers:
 * `SELECT * FROM devices [WHERE cond [AND cond]…]` with `cond` = `path op literal`,
 * `op` one of `= != <>`, literals `true false null`, numbers and 'strings'; paths into the
 * twin (`deviceId`, `status`, `capabilities.iotEdge`, `tags.x`, `properties.reported.y`, …).
 */
import { ApiError } from "./http.js";

type Literal = string | number | boolean | null;
interface Condition {
  path: string[];
  negate: boolean;
  value: Literal;
}

function literal(s: string): Literal {
  if (s === "true") return true;
  if (s === "false") return false;
  if (s === "null") return null;
  if (/^'.*'$/.test(s)) return s.slice(1, -1).replace(/''/g, "'");
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  throw new ApiError(
    400,
    "ArgumentInvalid",
    `query literal ${s} is not true, false, null, a number or a 'string'`,
  );
}

/** Parses a query into its conditions (all must hold). */
export function parseQuery(query: unknown): Condition[] {
  if (typeof query !== "string") throw new ApiError(400, "ArgumentInvalid", "query must be a string");
  const m = /^\s*SELECT\s+\*\s+FROM\s+devices(?:\s+WHERE\s+(.+?))?\s*$/is.exec(query);
  if (!m) throw new ApiError(400, "ArgumentInvalid", "only SELECT * FROM devices [WHERE …] is supported");
  if (!m[1]) return [];
  return m[1].split(/\s+AND\s+/i).map((part) => {
    const c = /^([A-Za-z0-9_$.]+)\s*(=|!=|<>)\s*(.+)$/.exec(part.trim());
    if (!c?.[1] || !c[2] || !c[3])
      throw new ApiError(400, "ArgumentInvalid", `query condition "${part.trim()}" is not path op literal`);
    return { path: c[1].split("."), negate: c[2] !== "=", value: literal(c[3].trim()) };
  });
}

/** True when `doc` (a twin JSON) meets every condition. */
export function matches(doc: Record<string, unknown>, conditions: Condition[]): boolean {
  return conditions.every((c) => {
    let v: unknown = doc;
    for (const key of c.path)
      v = typeof v === "object" && v !== null ? (v as Record<string, unknown>)[key] : undefined;
    const equal = v === c.value || (v === undefined && c.value === null);
    return c.negate ? !equal : equal;
  });
}
