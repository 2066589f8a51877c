/**
 * Route conditions: IoT Hub's routing query language, parsed once into a tree and
 * evaluated per message.
 *
 * References: bare names are application properties; `$`-names are system properties
 * (`$connectionDeviceId`, `$connectionModuleId`, `$contentType`, `$contentEncoding`,
 * `$messageId`, `$correlationId`, `$outputName`, …); `$body.a.b` reads a JSON body (content
 * type JSON, UTF-8). Literals: numbers, 'strings' or "strings", true, false, null.
 * Operators, loosest first: OR; AND; NOT; = != <> < <= > >=; + -; * / %; unary -.
 *
 * Semantics as IoT Hub's: three-valued. A missing property, or an operator given the wrong
 * types, is `undefined`, which propagates: comparisons with it are undefined, `AND` is
 * false if either side is false, `OR` true if either is true, `NOT` keeps it undefined. A
 * route matches only when its condition is exactly `true`.
 */
import { RouteSyntaxError } from "./syntax.js";

/** What a condition is evaluated against. */
export interface ConditionInput {
  /** Application properties. */
  properties: Record<string, string>;
  /** System properties by their query name without `$` (`connectionDeviceId`, `contentType`, …). */
  system: Record<string, string | undefined>;
  body: Buffer;
}

type Value = string | number | boolean | null | undefined | object;

/** A parsed condition. */
export type Condition =
  | { op: "lit"; value: Value }
  | { op: "app"; name: string }
  | { op: "sys"; name: string }
  | { op: "body"; path: string[] }
  | { op: "not" | "neg"; arg: Condition }
  | { op: "and" | "or" | "cmp" | "arith"; kind: string; left: Condition; right: Condition }
  | { op: "call"; name: string; args: Condition[] };

interface Token {
  kind: "num" | "str" | "name" | "op" | "(" | ")" | "," | "end";
  text: string;
  value?: Value;
  at: number;
}

const OPS = ["<=", ">=", "<>", "!=", "=", "<", ">", "+", "-", "*", "/", "%"];

function tokenize(text: string, offset: number): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    const at = offset + i + 1;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" || c === ")" || c === ",") {
      out.push({ kind: c, text: c, at });
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      let s = "";
      let j = i + 1;
      for (; j < text.length; j++) {
        const d = text[j] as string;
        if (d === "\\" && j + 1 < text.length) {
          s += text[++j];
          continue;
        }
        if (d === c) break;
        s += d;
      }
      if (j >= text.length) throw new RouteSyntaxError(at, "unterminated string");
      out.push({ kind: "str", text: text.slice(i, j + 1), value: s, at });
      i = j + 1;
      continue;
    }
    const num = /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/.exec(text.slice(i));
    if (num) {
      out.push({ kind: "num", text: num[0], value: Number(num[0]), at });
      i += num[0].length;
      continue;
    }
    const name = /^\$?[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_$-]+)*/.exec(text.slice(i));
    if (name) {
      out.push({ kind: "name", text: name[0], at });
      i += name[0].length;
      continue;
    }
    const op = OPS.find((o) => text.startsWith(o, i));
    if (op) {
      out.push({ kind: "op", text: op, at });
      i += op.length;
      continue;
    }
    throw new RouteSyntaxError(at, `unexpected ${JSON.stringify(c)}`);
  }
  out.push({ kind: "end", text: "", at: offset + text.length + 1 });
  return out;
}

/** Functions: name → [min args, max args]. */
const FUNCTIONS: Record<string, [number, number]> = {
  IS_DEFINED: [1, 1],
  IS_NULL: [1, 1],
  IS_BOOL: [1, 1],
  IS_NUMBER: [1, 1],
  IS_STRING: [1, 1],
  IS_OBJECT: [1, 1],
  IS_ARRAY: [1, 1],
  IS_PRIMITIVE: [1, 1],
  STARTS_WITH: [2, 2],
  ENDS_WITH: [2, 2],
  CONTAINS: [2, 2],
  INDEX_OF: [2, 2],
  LOWER: [1, 1],
  UPPER: [1, 1],
  LENGTH: [1, 1],
  SUBSTRING: [2, 3],
  CONCAT: [2, 16],
  LTRIM: [1, 1],
  RTRIM: [1, 1],
  AS_NUMBER: [1, 1],
  ABS: [1, 1],
  CEILING: [1, 1],
  FLOOR: [1, 1],
  EXP: [1, 1],
  LOG: [1, 1],
  LOG10: [1, 1],
  POWER: [2, 2],
  SIGN: [1, 1],
  SQRT: [1, 1],
  SQUARE: [1, 1],
};

class Parser {
  #tokens: Token[];
  #i = 0;

  constructor(tokens: Token[]) {
    this.#tokens = tokens;
  }

  get #peek(): Token {
    return this.#tokens[this.#i] as Token;
  }

  #take(): Token {
    return this.#tokens[this.#i++] as Token;
  }

  #isWord(word: string): boolean {
    return this.#peek.kind === "name" && this.#peek.text.toUpperCase() === word;
  }

  parse(): Condition {
    const c = this.#or();
    if (this.#peek.kind !== "end")
      throw new RouteSyntaxError(this.#peek.at, `unexpected ${JSON.stringify(this.#peek.text)}`);
    return c;
  }

  #or(): Condition {
    let left = this.#and();
    while (this.#isWord("OR")) {
      this.#take();
      left = { op: "or", kind: "OR", left, right: this.#and() };
    }
    return left;
  }

  #and(): Condition {
    let left = this.#not();
    while (this.#isWord("AND")) {
      this.#take();
      left = { op: "and", kind: "AND", left, right: this.#not() };
    }
    return left;
  }

  #not(): Condition {
    if (this.#isWord("NOT")) {
      this.#take();
      return { op: "not", arg: this.#not() };
    }
    return this.#comparison();
  }

  #comparison(): Condition {
    const left = this.#additive();
    const t = this.#peek;
    if (t.kind === "op" && ["=", "!=", "<>", "<", "<=", ">", ">="].includes(t.text)) {
      this.#take();
      return { op: "cmp", kind: t.text === "<>" ? "!=" : t.text, left, right: this.#additive() };
    }
    return left;
  }

  #additive(): Condition {
    let left = this.#multiplicative();
    while (this.#peek.kind === "op" && (this.#peek.text === "+" || this.#peek.text === "-")) {
      const kind = this.#take().text;
      left = { op: "arith", kind, left, right: this.#multiplicative() };
    }
    return left;
  }

  #multiplicative(): Condition {
    let left = this.#unary();
    while (this.#peek.kind === "op" && ["*", "/", "%"].includes(this.#peek.text)) {
      const kind = this.#take().text;
      left = { op: "arith", kind, left, right: this.#unary() };
    }
    return left;
  }

  #unary(): Condition {
    if (this.#peek.kind === "op" && this.#peek.text === "-") {
      this.#take();
      return { op: "neg", arg: this.#unary() };
    }
    return this.#primary();
  }

  #primary(): Condition {
    const t = this.#take();
    if (t.kind === "num" || t.kind === "str") return { op: "lit", value: t.value };
    if (t.kind === "(") {
      const inner = this.#or();
      const close = this.#take();
      if (close.kind !== ")") throw new RouteSyntaxError(close.at, "expected )");
      return inner;
    }
    if (t.kind === "name") {
      const upper = t.text.toUpperCase();
      if (upper === "TRUE") return { op: "lit", value: true };
      if (upper === "FALSE") return { op: "lit", value: false };
      if (upper === "NULL") return { op: "lit", value: null };
      if (this.#peek.kind === "(") return this.#call(t);
      if (["AND", "OR", "NOT"].includes(upper))
        throw new RouteSyntaxError(t.at, `${t.text} needs an operand before it`);
      if (t.text.startsWith("$body")) {
        const path = t.text.split(".").slice(1);
        if (t.text !== "$body" && !t.text.startsWith("$body."))
          throw new RouteSyntaxError(t.at, `unknown ${t.text}`);
        return { op: "body", path };
      }
      if (t.text.startsWith("$")) return { op: "sys", name: t.text.slice(1) };
      return { op: "app", name: t.text };
    }
    if (t.kind === "end") throw new RouteSyntaxError(t.at, "the condition ends too early");
    throw new RouteSyntaxError(t.at, `unexpected ${JSON.stringify(t.text)}`);
  }

  #call(name: Token): Condition {
    const fn = name.text.toUpperCase();
    const arity = FUNCTIONS[fn];
    if (!arity) throw new RouteSyntaxError(name.at, `unknown function ${name.text}`);
    this.#take(); // (
    const args: Condition[] = [];
    if (this.#peek.kind !== ")") {
      args.push(this.#or());
      while (this.#peek.kind === ",") {
        this.#take();
        args.push(this.#or());
      }
    }
    const close = this.#take();
    if (close.kind !== ")") throw new RouteSyntaxError(close.at, `expected ) after the arguments of ${fn}`);
    if (args.length < arity[0] || args.length > arity[1]) {
      const want = arity[0] === arity[1] ? `${arity[0]}` : `${arity[0]}-${arity[1]}`;
      throw new RouteSyntaxError(
        name.at,
        `${fn} takes ${want} argument${arity[1] === 1 ? "" : "s"}, got ${args.length}`,
      );
    }
    return { op: "call", name: fn, args };
  }
}

/** Parses a condition; `offset` is where it starts in the route (for error columns). */
export function parseCondition(text: string, offset = 0): Condition {
  return new Parser(tokenize(text, offset)).parse();
}

function compare(kind: string, a: Value, b: Value): boolean | undefined {
  if (a === undefined || b === undefined) return undefined;
  if (kind === "=" || kind === "!=") {
    if (typeof a !== typeof b || (typeof a === "object" && a !== null))
      return a === null && b === null ? kind === "=" : undefined;
    return kind === "=" ? a === b : a !== b;
  }
  if (!((typeof a === "number" && typeof b === "number") || (typeof a === "string" && typeof b === "string")))
    return undefined;
  switch (kind) {
    case "<":
      return a < b;
    case "<=":
      return a <= b;
    case ">":
      return a > b;
    default:
      return a >= b;
  }
}

function arith(kind: string, a: Value, b: Value): number | undefined {
  if (typeof a !== "number" || typeof b !== "number") return undefined;
  switch (kind) {
    case "+":
      return a + b;
    case "-":
      return a - b;
    case "*":
      return a * b;
    case "/":
      return b === 0 ? undefined : a / b;
    default:
      return b === 0 ? undefined : a % b;
  }
}

const str = (v: Value): v is string => typeof v === "string";
const num = (v: Value): v is number => typeof v === "number";

function call(name: string, args: Value[]): Value {
  const [a, b, c] = args;
  switch (name) {
    case "IS_DEFINED":
      return a !== undefined;
    case "IS_NULL":
      return a === null;
    case "IS_BOOL":
      return typeof a === "boolean";
    case "IS_NUMBER":
      return num(a);
    case "IS_STRING":
      return str(a);
    case "IS_OBJECT":
      return typeof a === "object" && a !== null && !Array.isArray(a);
    case "IS_ARRAY":
      return Array.isArray(a);
    case "IS_PRIMITIVE":
      return a === null || ["string", "number", "boolean"].includes(typeof a);
    case "STARTS_WITH":
      return str(a) && str(b) ? a.startsWith(b) : undefined;
    case "ENDS_WITH":
      return str(a) && str(b) ? a.endsWith(b) : undefined;
    case "CONTAINS":
      return str(a) && str(b) ? a.includes(b) : undefined;
    case "INDEX_OF":
      return str(a) && str(b) ? a.indexOf(b) : undefined;
    case "LOWER":
      return str(a) ? a.toLowerCase() : undefined;
    case "UPPER":
      return str(a) ? a.toUpperCase() : undefined;
    case "LENGTH":
      return str(a) ? a.length : undefined;
    case "SUBSTRING":
      if (!str(a) || !num(b) || (c !== undefined && !num(c))) return undefined;
      return c === undefined ? a.slice(b) : a.substr(b, c as number);
    case "CONCAT":
      return args.every(str) ? args.join("") : undefined;
    case "LTRIM":
      return str(a) ? a.trimStart() : undefined;
    case "RTRIM":
      return str(a) ? a.trimEnd() : undefined;
    case "AS_NUMBER": {
      if (num(a)) return a;
      if (!str(a) || a.trim() === "") return undefined;
      const n = Number(a);
      return Number.isFinite(n) ? n : undefined;
    }
    default:
      return math(name, a, b);
  }
}

function math(name: string, a: Value, b: Value): number | undefined {
  if (!num(a)) return undefined;
  switch (name) {
    case "ABS":
      return Math.abs(a);
    case "CEILING":
      return Math.ceil(a);
    case "FLOOR":
      return Math.floor(a);
    case "EXP":
      return Math.exp(a);
    case "LOG":
      return a > 0 ? Math.log(a) : undefined;
    case "LOG10":
      return a > 0 ? Math.log10(a) : undefined;
    case "POWER":
      return num(b) ? a ** b : undefined;
    case "SIGN":
      return Math.sign(a);
    case "SQRT":
      return a >= 0 ? Math.sqrt(a) : undefined;
    default:
      return a * a;
  }
}

/** The message's JSON body, parsed at most once per evaluation; undefined if it is not JSON. */
class Body {
  #input: ConditionInput;
  #parsed: { value: Value } | undefined;

  constructor(input: ConditionInput) {
    this.#input = input;
  }

  get(path: string[]): Value {
    if (!this.#parsed) {
      const type = this.#input.system.contentType?.toLowerCase() ?? "";
      const encoding = this.#input.system.contentEncoding?.toLowerCase().replace("-", "") ?? "utf8";
      let value: Value;
      if (type.includes("json") && encoding === "utf8") {
        try {
          value = JSON.parse(this.#input.body.toString("utf8")) as Value;
        } catch {
          value = undefined;
        }
      }
      this.#parsed = { value };
    }
    let v = this.#parsed.value;
    for (const key of path) {
      if (typeof v !== "object" || v === null) return undefined;
      v = (v as Record<string, Value>)[key];
    }
    return v;
  }
}

function evaluate(c: Condition, input: ConditionInput, body: Body): Value {
  switch (c.op) {
    case "lit":
      return c.value;
    case "app":
      return input.properties[c.name];
    case "sys":
      return input.system[c.name];
    case "body":
      return body.get(c.path);
    case "not": {
      const v = evaluate(c.arg, input, body);
      return typeof v === "boolean" ? !v : undefined;
    }
    case "neg": {
      const v = evaluate(c.arg, input, body);
      return num(v) ? -v : undefined;
    }
    case "and": {
      const l = evaluate(c.left, input, body);
      if (l === false) return false;
      const r = evaluate(c.right, input, body);
      if (r === false) return false;
      return l === true && r === true ? true : undefined;
    }
    case "or": {
      const l = evaluate(c.left, input, body);
      if (l === true) return true;
      const r = evaluate(c.right, input, body);
      if (r === true) return true;
      return l === false && r === false ? false : undefined;
    }
    case "cmp":
      return compare(c.kind, evaluate(c.left, input, body), evaluate(c.right, input, body));
    case "arith":
      return arith(c.kind, evaluate(c.left, input, body), evaluate(c.right, input, body));
    case "call":
      return call(
        c.name,
        c.args.map((a) => evaluate(a, input, body)),
      );
  }
}

/** True only when the condition evaluates to exactly `true` for this message. */
export function matches(c: Condition, input: ConditionInput): boolean {
  return evaluate(c, input, new Body(input)) === true;
}
