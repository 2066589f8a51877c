/**
 * How an `edgehub` command is declared, parsed and explained: one declaration per command
 * (arguments, options, what each means) gives both the parser's options and the usage text,
 * so the help can never drift from what the parser takes.
 */
import { parseArgs } from "node:util";

/** A command line that cannot run: the dispatcher prints the reason and the usage and exits 2. */
export class UsageError extends Error {
  constructor(
    message: string,
    /** The command whose usage applies; the whole command's when absent. */
    readonly command?: CommandSpec,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

/** One option of a command. */
export interface OptionSpec {
  name: string;
  /** What the option takes, e.g. `<edge>`; absent for a flag. */
  value?: string;
  help: string;
  short?: string;
  /** A string option the command cannot run without. */
  required?: boolean;
}

/** One positional argument. */
export interface ArgSpec {
  name: string;
  help: string;
  optional?: boolean;
}

/** What a command's `run` gets: its arguments and options, checked against its declaration. */
export interface Parsed {
  /** Positional arguments by declared name (optional ones may be absent). */
  args: Record<string, string>;
  /** A string option's value, or undefined when not given. */
  opt(name: string): string | undefined;
  /** Whether a flag was given. */
  flag(name: string): boolean;
  /** `--json`: machine-readable output. */
  json: boolean;
}

/** Where a command writes. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

/** A command: `edgehub <group> <name> …`. */
export interface CommandSpec {
  /** Full name after `edgehub`, e.g. `device create`. */
  name: string;
  summary: string;
  args?: readonly ArgSpec[];
  options?: readonly OptionSpec[];
  /** Whether it reaches a running hub (takes the login options). */
  login?: boolean;
  /** Extra lines after the options, e.g. what the output looks like. */
  notes?: string;
  run(input: Parsed, io: CommandIo): Promise<void>;
}

/** The options every command reaching a hub takes. */
export const LOGIN_OPTIONS: readonly OptionSpec[] = [
  {
    name: "data-dir",
    value: "<dir>",
    help: "the hub's data dir: its service-connection-string and certs/ca.pem (default ./edgehub-data)",
  },
  {
    name: "login",
    value: "<connection string>",
    help: "a service connection string instead of the data dir's",
  },
  { name: "port", value: "<port>", help: "the hub's HTTPS port, listen.https (default 8443)" },
  {
    name: "ca",
    value: "<file>",
    help: "CA certificate of the hub (default <dataDir>/certs/ca.pem when present)",
  },
];

const JSON_OPTION: OptionSpec = {
  name: "json",
  help: "print JSON (one object, or one per line for streams)",
};
const HELP_OPTION: OptionSpec = { name: "help", short: "h", help: "print this usage" };

function allOptions(spec: CommandSpec): OptionSpec[] {
  return [...(spec.options ?? []), ...(spec.login ? LOGIN_OPTIONS : []), JSON_OPTION];
}

/** The one-line synopsis of a command. */
export function synopsis(spec: CommandSpec): string {
  const parts = [`edgehub ${spec.name}`];
  for (const a of spec.args ?? []) parts.push(a.optional ? `[<${a.name}>]` : `<${a.name}>`);
  for (const o of spec.options ?? []) {
    const text = `--${o.name}${o.value ? ` ${o.value}` : ""}`;
    parts.push(o.required ? text : `[${text}]`);
  }
  if (spec.login) parts.push("[<login>]");
  parts.push("[--json]");
  return parts.join(" ");
}

/** The full usage text of a command, from its declaration. */
export function usage(spec: CommandSpec): string {
  const rows: Array<[string, string]> = [];
  for (const a of spec.args ?? []) rows.push([`<${a.name}>`, a.help]);
  for (const o of [...(spec.options ?? []), JSON_OPTION])
    rows.push([`--${o.name}${o.value ? ` ${o.value}` : ""}`, o.help]);
  if (spec.login) {
    rows.push(["<login>", "how to reach the running hub's service API:"]);
    for (const o of LOGIN_OPTIONS) rows.push([`  --${o.name} ${o.value ?? ""}`, o.help]);
  }
  const width = Math.min(28, Math.max(...rows.map(([l]) => l.length)) + 2);
  const lines = [`usage: ${synopsis(spec)}`, "", `${spec.summary}`, ""];
  for (const [left, right] of rows) {
    lines.push(
      left.length + 2 > width
        ? `  ${left}\n  ${" ".repeat(width)}${right}`
        : `  ${left.padEnd(width)}${right}`,
    );
  }
  if (spec.notes) lines.push("", spec.notes);
  return lines.join("\n");
}

/** Parses `argv` (after the command's name) against its declaration; throws {@link UsageError}. */
export function parse(spec: CommandSpec, argv: readonly string[]): Parsed & { help: boolean } {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {};
  for (const o of [...allOptions(spec), HELP_OPTION])
    options[o.name] = { type: o.value ? "string" : "boolean", ...(o.short ? { short: o.short } : {}) };
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: [...argv], options, allowPositionals: true, strict: true }));
  } catch (err) {
    const e = err as Error & { code?: string };
    const unknown = /^Unknown option '([^']+)'/.exec(e.message)?.[1];
    const why = unknown ? `${unknown} does not apply to ${spec.name}` : e.message.split("\n")[0];
    throw new UsageError(why ?? "bad arguments", spec);
  }
  const help = values.help === true;
  const declared = spec.args ?? [];
  const args: Record<string, string> = Object.create(null) as Record<string, string>;
  if (!help) {
    const required = declared.filter((a) => !a.optional).length;
    if (positionals.length < required) {
      const missing = declared.slice(positionals.length).filter((a) => !a.optional);
      throw new UsageError(`${spec.name} needs ${missing.map((a) => `<${a.name}>`).join(" ")}`, spec);
    }
    const absent = (spec.options ?? []).find((o) => o.required && typeof values[o.name] !== "string");
    if (absent)
      throw new UsageError(`${spec.name} needs --${absent.name} ${absent.value ?? ""}`.trim(), spec);
    if (positionals.length > declared.length)
      throw new UsageError(`${spec.name}: unexpected argument ${positionals[declared.length]}`, spec);
    declared.forEach((a, i) => {
      const v = positionals[i];
      if (v !== undefined) args[a.name] = v;
    });
  }
  return {
    help,
    args,
    opt: (name) => {
      const v = values[name];
      return typeof v === "string" ? v : undefined;
    },
    flag: (name) => values[name] === true,
    json: values.json === true,
  };
}

/** A group of commands (`device`, `cert`, …) with its one-line summary. */
export interface CommandGroup {
  name: string;
  summary: string;
  commands: readonly CommandSpec[];
}

/** The usage of a group: each command's synopsis and summary. */
export function groupUsage(group: CommandGroup): string {
  const lines = [`${group.summary}`, ""];
  for (const c of group.commands) lines.push(`usage: ${synopsis(c)}`, `       ${c.summary}`);
  lines.push("", `edgehub help ${group.name} <command> for the options of one`);
  return lines.join("\n");
}

/** Finds `edgehub <group> <command>`; throws {@link UsageError} naming the choices. */
export function findCommand(group: CommandGroup, name: string | undefined): CommandSpec {
  const found = group.commands.find((c) => c.name === `${group.name} ${name}`);
  if (!found) {
    const names = group.commands.map((c) => c.name.slice(group.name.length + 1)).join(", ");
    throw new UsageError(`${group.name} needs a command: ${names}${name ? ` (not ${name})` : ""}`);
  }
  return found;
}

/** `\uXXXX` for a character. */
const escaped = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
/** C0 controls but tab (newlines too: one output line per item), DEL and the C1 controls (a terminal acts on them). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them to escape them is the point
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;
/** DEL and C1 controls: JSON.stringify escapes C0 but leaves these raw. */
const C1 = /[\u007f-\u009f]/g;

/** A text from the wire made safe for a terminal: control characters escaped, nothing else. */
export function printable(text: string): string {
  return text.replace(CONTROLS, escaped);
}

/** JSON on one line, with DEL and C1 controls escaped too (still valid JSON). */
export function jsonLine(value: unknown): string {
  return `${JSON.stringify(value).replace(C1, escaped)}\n`;
}
