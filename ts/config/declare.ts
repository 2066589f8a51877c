/**
 * How a config key is declared: once, with valibot (small, tree-shaken, no code generation).
 * A declaration gives the key's type (`v.InferInput`/`v.InferOutput`), its default, the
 * check whose failure names the key's path (`config key parent.window: must be …`), and its
 * line in `edgehub start --help` ({@link usageOf}).
 */
import * as v from "valibot";
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** A value kind: its schema and what a value must be, in the words of errors and usage. */
export interface Kind<S extends v.GenericSchema> {
  schema: S;
  what: string;
}

/** A kind whose every failure reads `must be {what}`. */
export function kind<S extends v.GenericSchema>(schema: S, what: string): Kind<S> {
  return { schema: v.message(schema, `must be ${what}`), what };
}

/** Integers from `min` to `max`. */
export function integer(min: number, max: number, what: string) {
  return kind(v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max)), what);
}

/** What {@link usageOf} reads off a key. */
type KeyMeta = {
  what: string;
};

/**
 * A key that takes `dflt` when absent (a function: computed at each load). `help` says
 * what the key does; the usage adds what it must be and the default.
 */
export function key<S extends v.GenericSchema, const D extends v.InferInput<S> | (() => v.InferInput<S>)>(
  k: Kind<S>,
  dflt: D,
  help: string,
) {
  const meta: KeyMeta = { what: k.what };
  return v.pipe(v.optional(k.schema, dflt), v.description(help), v.metadata(meta));
}

/** A key without a default: absent stays absent (`help` says what that means). */
export function optionalKey<S extends v.GenericSchema>(k: Kind<S>, help: string) {
  const meta: KeyMeta = { what: k.what };
  return v.pipe(v.optional(k.schema), v.description(help), v.metadata(meta));
}

/** A key that must be given. */
export function requiredKey<S extends v.GenericSchema>(k: Kind<S>, help: string) {
  const meta: KeyMeta = { what: k.what };
  return v.pipe(k.schema, v.description(help), v.metadata(meta));
}

/** Messages of an object's own issues: a key it does not know, a key it needs, not an object. */
function objectMessage(what: string): v.ErrorMessage<v.StrictObjectIssue> {
  return (issue) => {
    if (issue.expected === "never") return "is not a known key";
    if (issue.expected?.startsWith('"')) return "is required";
    return `must be ${what}`;
  };
}

/** A group of keys; unknown keys are refused, naming them. */
export function group<const E extends v.ObjectEntries>(entries: E, what = "an object") {
  return v.strictObject(entries, objectMessage(what));
}

/** The path of an issue as the config writes it: `parent.window`, `$edgeHub."properties.desired"`. */
function pathOf(issue: v.BaseIssue<unknown>): string {
  return (issue.path ?? [])
    .map((p) => {
      const k = String(p.key);
      return k.includes(".") ? `"${k}"` : k;
    })
    .join(".");
}

/** A refused config key: CONFIG_INVALID with the key's path. */
export function bad(key: string, why: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.CONFIG_INVALID, `config key ${key}: ${why}`);
}

/**
 * `raw` checked against `schema`, with its defaults; the first failure throws
 * CONFIG_INVALID naming the key under `prefix` (e.g. `$edgeHub.storeAndForwardConfiguration`).
 */
export function check<S extends v.GenericSchema>(schema: S, raw: unknown, prefix = ""): v.InferOutput<S> {
  const result = v.safeParse(schema, raw, { abortEarly: true });
  if (result.success) return result.output;
  const issue = result.issues[0];
  const path = [prefix, pathOf(issue)].filter(Boolean).join(".");
  throw bad(path || "(root)", issue.message);
}

/** One line of the usage: a key's path, what it must be, its default and what it does. */
export interface UsageLine {
  path: string;
  what: string;
  default: string | undefined;
  help: string;
}

/** The schema under optional/pipe wrappers, and the description and metadata found on the way. */
function unwrap(schema: v.GenericSchema): {
  inner: v.GenericSchema;
  help: string | undefined;
  meta: Partial<KeyMeta>;
  dflt: unknown;
} {
  const help = v.getDescription(schema as Parameters<typeof v.getDescription>[0]);
  const meta = v.getMetadata(schema as Parameters<typeof v.getMetadata>[0]) as Partial<KeyMeta>;
  let inner = schema as v.GenericSchema & { wrapped?: v.GenericSchema; default?: unknown };
  const dflt = inner.type === "optional" ? inner.default : undefined;
  while (inner.type === "optional" && inner.wrapped) inner = inner.wrapped;
  return { inner, help, meta, dflt };
}

/** A default as the usage shows it; a computed one is described by the key's help instead. */
function shown(dflt: unknown): string | undefined {
  if (dflt === undefined || typeof dflt === "function") return undefined;
  if (typeof dflt === "object" && dflt !== null && !Array.isArray(dflt)) return undefined;
  return JSON.stringify(dflt);
}

/**
 * Every key under `schema`, depth first in declaration order: groups are walked into
 * (`listen.mqtts`), a named map shows as `name.<key>` (`routes.<name>.priority`), and a key
 * that also takes another form (`metrics`: `false`) is listed with its group's keys.
 */
export function usageOf(schema: v.GenericSchema, prefix = ""): UsageLine[] {
  const { inner, help, meta, dflt } = unwrap(schema);
  const node = inner as v.GenericSchema & {
    entries?: v.ObjectEntries;
    value?: v.GenericSchema;
    getter?: (input: unknown) => v.GenericSchema;
  };
  const lines: UsageLine[] = [];
  if (help !== undefined && prefix !== "")
    lines.push({ path: prefix, what: meta.what ?? "", default: shown(dflt), help });
  const below = (name: string) => (prefix === "" ? name : `${prefix}.${name}`);
  // A deployment manifest's sections are IoT Edge's to document: their keys are not listed.
  if (node.type === "loose_object") return lines;
  if (node.entries) {
    for (const [name, entry] of Object.entries(node.entries)) lines.push(...usageOf(entry, below(name)));
  } else if (node.value) {
    lines.push(...usageOf(node.value, below("<name>")));
  } else if (node.getter) {
    // A lazy key picks its schema by the input's form; an object shows the group's keys.
    lines.push(...usageOf(node.getter({}), prefix).filter((l) => l.path !== prefix));
  }
  return lines;
}

/** The usage text: one key a line, what it takes and its default, then what it does. */
export function usageText(lines: readonly UsageLine[]): string {
  return lines
    .map((l) => {
      const takes = [l.what, l.default === undefined ? "" : `default ${l.default}`]
        .filter(Boolean)
        .join("; ");
      return `  ${l.path}${takes ? `  (${takes})` : ""}\n      ${l.help}`;
    })
    .join("\n");
}
