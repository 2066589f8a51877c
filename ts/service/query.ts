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
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  throw new ApiError(
    400,
    "ArgumentInvalid",
    `query literal ${s.slice(0, 64)} is not true, false, null, a number or a 'string'`,
  );
}

type Token = { kind: "word"; text: string } | { kind: "op"; text: string } | { kind: "string"; text: string };

const WORD = /[A-Za-z0-9_$.-]+/y;
const SPACE = /\s+/y;

/**
 * Splits text into words, operators and 'strings' in one pass (no regex that can
 * backtrack over a run of input: 40k spaces once took 1.5 s).
 */
function tokens(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    SPACE.lastIndex = i;
    if (SPACE.test(text)) {
      i = SPACE.lastIndex;
      continue;
    }
    const c = text[i];
    if (c === "'") {
      let value = "";
      let j = i + 1;
      for (;;) {
        const q = text.indexOf("'", j);
        if (q < 0) throw new ApiError(400, "ArgumentInvalid", "query has an unterminated 'string'");
        value += text.slice(j, q);
        if (text[q + 1] !== "'") {
          i = q + 1;
          break;
        }
        value += "'";
        j = q + 2;
      }
      out.push({ kind: "string", text: value });
      continue;
    }
    const two = text.slice(i, i + 2);
    if (two === "!=" || two === "<>") {
      out.push({ kind: "op", text: two });
      i += 2;
      continue;
    }
    if (c === "=" || c === "*") {
      out.push({ kind: "op", text: c });
      i += 1;
      continue;
    }
    WORD.lastIndex = i;
    if (!WORD.test(text)) throw new ApiError(400, "ArgumentInvalid", `query has an unexpected ${c} at ${i}`);
    out.push({ kind: "word", text: text.slice(i, WORD.lastIndex) });
    i = WORD.lastIndex;
  }
  return out;
}

const UNSUPPORTED = "only SELECT * FROM devices [WHERE path op literal [AND …]] is supported";

/** Parses a query into its conditions (all must hold). */
export function parseQuery(query: unknown): Condition[] {
  if (typeof query !== "string") throw new ApiError(400, "ArgumentInvalid", "query must be a string");
  const t = tokens(query);
  const keyword = (k: Token | undefined, word: string) => k?.kind === "word" && k.text.toUpperCase() === word;
  if (!keyword(t[0], "SELECT") || t[1]?.text !== "*" || !keyword(t[2], "FROM") || !keyword(t[3], "DEVICES"))
    throw new ApiError(400, "ArgumentInvalid", UNSUPPORTED);
  if (t.length === 4) return [];
  if (!keyword(t[4], "WHERE")) throw new ApiError(400, "ArgumentInvalid", UNSUPPORTED);
  const conditions: Condition[] = [];
  for (let i = 5; ; i += 4) {
    const [path, op, value] = [t[i], t[i + 1], t[i + 2]];
    if (path?.kind !== "word" || op?.kind !== "op" || op.text === "*" || !value || value.kind === "op")
      throw new ApiError(400, "ArgumentInvalid", "a query condition is not path op literal");
    conditions.push({
      path: path.text.split("."),
      negate: op.text !== "=",
      value: value.kind === "string" ? value.text : literal(value.text),
    });
    if (i + 3 === t.length) return conditions;
    if (!keyword(t[i + 3], "AND")) throw new ApiError(400, "ArgumentInvalid", UNSUPPORTED);
  }
}

/** True when `doc` (a twin JSON) meets every condition. */
export function matches(doc: Record<string, unknown>, conditions: Condition[]): boolean {
  return conditions.every((c) => {
    let v: unknown = doc;
    // Own keys only: a path never reaches a prototype.
    for (const key of c.path)
      v =
        typeof v === "object" && v !== null && Object.hasOwn(v, key)
          ? (v as Record<string, unknown>)[key]
          : undefined;
    const equal = v === c.value || (v === undefined && c.value === null);
    return c.negate ? !equal : equal;
  });
}
