#!/usr/bin/env node
/**
 * The `edgehub` command: a small dispatcher over the command table (./commands.ts).
 * `edgehub start [--config edgehub.json]` (./start.ts) runs a hub until SIGINT or SIGTERM;
 * with no config it runs on the embedded defaults (data in ./edgehub-data, a development
 * CA, MQTT over TLS on 8883). The other commands reach a running hub through its service
 * API, one module per group (./device.ts, ./module.ts, ./twin.ts, ./method.ts, ./c2d.ts,
 * ./monitor.ts, ./status.ts, ./identity.ts) or make certificates (./cert.ts); each is
 * declared once (./command.ts) and its usage comes from there.
 *
 * Exit codes (docs/api.md): 0 stopped cleanly (or a command done), 1 error (startup, config,
 * a refused command, or while stopping), 2 usage, 128 + signal number when a second
 * SIGINT/SIGTERM cuts the clean stop short. A reader that goes away (`edgehub monitor |
 * head -1`) ends a command quietly with 0; a hub keeps running without its stdout.
 */
import { createRequire } from "node:module";
import { EdgeHubError } from "../errors.js";
import {
  type CommandGroup,
  type CommandIo,
  type CommandSpec,
  findCommand,
  groupUsage,
  parse,
  synopsis,
  UsageError,
  usage,
} from "./command.js";
import { isGroup, loadCommand, loadCommands } from "./commands.js";

/** The overview: one line per command. */
async function overview(): Promise<string> {
  const lines = ["usage: edgehub <command> [<args>] [--json] [--help]", "       edgehub --version", ""];
  for (const c of await loadCommands()) {
    if (isGroup(c)) for (const sub of c.commands) lines.push(`  ${synopsis(sub)}`);
    else lines.push(`  ${synopsis(c)}`);
  }
  lines.push(
    "",
    "  <login>: --data-dir <dir> (the hub's; default ./edgehub-data) or --login <service connection string>,",
    "           --port <https port> (default 8443), --ca <file> (default <dataDir>/certs/ca.pem)",
    "edgehub help <command> (or <command> --help) for one command's options",
  );
  return lines.join("\n");
}

const io: CommandIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};

/** The command `argv` names, and the arguments left for it; a group alone stays a group. */
async function resolve(
  argv: readonly string[],
): Promise<{ found: CommandGroup | CommandSpec | undefined; rest: string[] }> {
  const [name, sub, ...rest] = argv;
  const top = await loadCommand(name);
  if (!top || !isGroup(top)) return { found: top, rest: argv.slice(1) };
  if (sub === undefined || sub.startsWith("-")) return { found: top, rest: argv.slice(1) };
  return { found: findCommand(top, sub), rest };
}

/** `edgehub help [<command> [<sub>]]`. */
async function help(argv: readonly string[]): Promise<string> {
  if (argv.length === 0) return overview();
  const { found } = await resolve(argv);
  if (!found) throw new UsageError(`no command ${argv.join(" ")}`);
  return isGroup(found) ? groupUsage(found) : usage(found);
}

/**
 * EPIPE on stdout or stderr: the reader is gone (`| head -1`). A command has nothing left to
 * do and ends with 0, without a stack trace; a running hub carries on (its store and clients
 * matter more than its console).
 */
function quietOnClosedPipe(keepRunning: boolean): void {
  const onError = (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    if (!keepRunning) process.exit(0);
  };
  process.stdout.on("error", onError);
  process.stderr.on("error", onError);
}

async function main(argv: string[]): Promise<void> {
  quietOnClosedPipe(argv[0] === "start");
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h") {
    process.stdout.write(`${await overview()}\n`);
    if (argv.length === 0) process.exitCode = 2;
    return;
  }
  if (argv[0] === "--version" || argv[0] === "-v") {
    const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  if (argv[0] === "help") {
    process.stdout.write(`${await help(argv.slice(1))}\n`);
    return;
  }
  const { found, rest } = await resolve(argv);
  if (!found) throw new UsageError(`no command ${argv[0]}`);
  if (isGroup(found)) {
    if (rest.includes("--help") || rest.includes("-h")) {
      process.stdout.write(`${groupUsage(found)}\n`);
      return;
    }
    findCommand(found, undefined); // throws: the group needs one of its commands, named
    return;
  }
  const input = parse(found, rest);
  if (input.help) {
    process.stdout.write(`${usage(found)}\n`);
    return;
  }
  await found.run(input, io);
}

main(process.argv.slice(2)).catch(async (err: unknown) => {
  // One line: the reason (a hub's message may carry newlines), then the usage for usage errors.
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ");
  if (err instanceof UsageError) {
    const how = err.command
      ? `usage: ${synopsis(err.command)}\n(edgehub help ${err.command.name} for more)`
      : await overview();
    process.stderr.write(`edgehub: ${oneLine(err.message)}\n${how}\n`);
    process.exit(2);
  }
  const code = err instanceof EdgeHubError ? ` [${err.code}]` : "";
  process.stderr.write(`edgehub: ${oneLine((err as Error).message)}${code}\n`);
  process.exit(1);
});
