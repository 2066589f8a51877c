/**
 * Hostile input for property tests and fuzzing: keys that name prototype members or need
 * escaping, JSON written as text (so a `__proto__` key really is on the wire), and a check
 * that `Object.prototype` is as it was.
 */
import fc from "fast-check";
import { inheritsNothing } from "../../ts/json.js";

/** Names of prototype members and of the keys prototype pollution goes through. */
export const PROTO_KEYS = [
  "__proto__",
  "constructor",
  "prototype",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "isPrototypeOf",
  "__defineGetter__",
] as const;

/** Keys a property bag or a twin must keep as they are: prototype names, escapes, unicode. */
export const adversarialKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(...PROTO_KEYS),
  fc.constantFrom(
    "%",
    "&",
    "=",
    "%25",
    "a=b&c",
    "+",
    " ",
    "ü",
    "日本",
    "😀",
    "$.mid",
    "$.cdid",
    "$version",
    "a.b",
    "a\u0085",
  ),
  fc.string({ maxLength: 6 }),
  fc.string({ unit: "grapheme", maxLength: 4 }),
);

/** A JSON value as it is written on the wire: objects as ordered entries, duplicates allowed. */
export type JsonTree = null | boolean | number | string | JsonTree[] | { obj: Array<[string, JsonTree]> };

const leaf: fc.Arbitrary<JsonTree> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ unit: "grapheme", maxLength: 8 }),
);

/** JSON trees with adversarial keys, `depth` levels at most. */
export function jsonTree(key: fc.Arbitrary<string> = adversarialKey, maxDepth = 4): fc.Arbitrary<JsonTree> {
  const { tree } = fc.letrec<{ tree: JsonTree; object: JsonTree; array: JsonTree }>((tie) => ({
    tree: fc.oneof({ maxDepth, depthIdentifier: "json" }, leaf, tie("object"), tie("array")),
    object: fc.array(fc.tuple(key, tie("tree")), { maxLength: 4 }).map((obj) => ({ obj })),
    array: fc.array(tie("tree"), { maxLength: 3 }),
  }));
  return tree;
}

/** A JSON object tree (what a patch or a body is). */
export function jsonObjectTree(key?: fc.Arbitrary<string>, maxDepth?: number): fc.Arbitrary<JsonTree> {
  return fc
    .array(fc.tuple(key ?? adversarialKey, jsonTree(key, maxDepth)), { maxLength: 5 })
    .map((obj) => ({ obj }));
}

/** The JSON text of a tree, keys in order and duplicates kept, as a client could send it. */
export function jsonText(t: JsonTree): string {
  if (t === null || typeof t !== "object") return JSON.stringify(t);
  if (Array.isArray(t)) return `[${t.map(jsonText).join(",")}]`;
  return `{${t.obj.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(",")}}`;
}

/** `v` as JSON text with object keys sorted, for comparing values whatever their key order. */
export function canonical(v: unknown): string {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")}}`;
}

/** True when every object reachable from `v` has no prototype. */
export function prototypeFree(v: unknown): boolean {
  if (v === null || typeof v !== "object") return true;
  if (Array.isArray(v)) return Object.getPrototypeOf(v) === Array.prototype && v.every(prototypeFree);
  if (!inheritsNothing(v)) return false;
  return Object.keys(v).every((k) => prototypeFree((v as Record<string, unknown>)[k]));
}

const snapshots = [Object.prototype, Array.prototype, Function.prototype].map((proto) => ({
  proto: proto as object,
  before: Object.getOwnPropertyDescriptors(proto),
}));

/**
 * Members added to or changed on `Object.prototype`, `Array.prototype` or
 * `Function.prototype` since this module loaded; they are put back as they were so that
 * one failure does not spoil the tests after it.
 */
export function pollution(): string[] {
  const out: string[] = [];
  for (const { proto, before } of snapshots) {
    const now = Object.getOwnPropertyDescriptors(proto);
    for (const k of Object.keys(now)) {
      // Own keys only: a polluted Object.prototype would answer for a missing one.
      const was = Object.hasOwn(before, k) ? before[k] : undefined;
      const is = now[k] as PropertyDescriptor;
      if (was && was.value === is.value && was.get === is.get && was.set === is.set) continue;
      out.push(k);
      if (was) Object.defineProperty(proto, k, was);
      else delete (proto as Record<string, unknown>)[k];
    }
  }
  return out;
}
