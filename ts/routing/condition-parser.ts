/**
 * The parser of route conditions (see condition.ts for the language): tokens, then a
 * precedence-climbing parser into a {@link Condition} tree. Errors are
 * {@link RouteSyntaxError}s with the column in the route.
 */
import type { Condition, Value } from "./condition.js";
import { RouteSyntaxError } from "./syntax.js";

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
    const arity = Object.hasOwn(FUNCTIONS, fn) ? FUNCTIONS[fn] : undefined;
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
