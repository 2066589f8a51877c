#!/usr/bin/env node
/**
 * The `edgehub` command: a small dispatcher. `edgehub start [--config edgehub.json]` runs a
 * hub until SIGINT or SIGTERM; with no config it runs on the embedded defaults (data in
 * ./edgehub-data, a development CA, MQTT over TLS on 8883). The other commands reach a
 * running hub through its service API, one module per group (./device.ts, ./module.ts,
 * ./twin.ts, ./method.ts, ./c2d.ts, ./monitor.ts, ./status.ts, ./identity.ts) or make certificates
 * (./cert.ts); each is declared once (./command.ts) and its usage comes from there.
 *
 * Exit codes (docs/api.md): 0 stopped cleanly (or a command done), 1 error (startup, config,
 * a refused command, or while stopping), 2 usage, 128 + signal number when a second
 * SIGINT/SIGTERM cuts the clean stop short.
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { constants } from "node:os";
import { EdgeHubError } from "../errors.js";
import { EdgeHub } from "../hub.js";
import { parseJson } from "../json.js";
import { c2dCommands } from "./c2d.js";
import { certCommands } from "./cert.js";
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
import { deviceCommands } from "./device.js";
import { identityCommands } from "./identity.js";
import { methodCommands } from "./method.js";
import { moduleCommands } from "./module.js";
import { monitorCommand } from "./monitor.js";
import { statusCommand } from "./status.js";
import { twinCommands } from "./twin.js";

const startCommand: CommandSpec = {
  name: "start",
  summary: "run the hub until interrupted (SIGINT or SIGTERM)",
  options: [
    {
      name: "config",
      short: "c",
      value: "<file.json>",
      help:
        "JSON configuration (keys: hostname, dataDir, listen {host, mqtts, https}, tls {certFile, keyFile, caFile}, " +
        "trustedDeviceCaFiles, parent, routes, storeAndForwardConfiguration {timeToLiveSecs, storeLimits {maxSizeBytes}}, " +
        "logLevel, limits, metrics {host, port} (default 127.0.0.1:9600, false: off; /metrics, /healthz, " +
        "/readyz, status page); docs/operating.md)",
    },
  ],
  run: (input) => start(input.opt("config")),
};

/** Every command: groups (`edgehub device create …`) and single ones (`edgehub monitor`). */
const COMMANDS: ReadonlyArray<CommandGroup | CommandSpec> = [
  startCommand,
  deviceCommands,
  moduleCommands,
  twinCommands,
  methodCommands,
  c2dCommands,
  monitorCommand,
  statusCommand,
  identityCommands,
  certCommands,
];

const isGroup = (c: CommandGroup | CommandSpec): c is CommandGroup => "commands" in c;

/** The overview: one line per command. */
function overview(): string {
  const lines = ["usage: edgehub <command> [<args>] [--json] [--help]", "       edgehub --version", ""];
  for (const c of COMMANDS) {
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
function resolve(argv: readonly string[]): { found: CommandGroup | CommandSpec | undefined; rest: string[] } {
  const [name, sub, ...rest] = argv;
  const top = COMMANDS.find((c) => c.name === name);
  if (!top || !isGroup(top)) return { found: top, rest: argv.slice(1) };
  if (sub === undefined || sub.startsWith("-")) return { found: top, rest: argv.slice(1) };
  return { found: findCommand(top, sub), rest };
}

/** `edgehub help [<command> [<sub>]]`. */
function help(argv: readonly string[]): string {
  if (argv.length === 0) return overview();
  const { found } = resolve(argv);
  if (!found) throw new UsageError(`no command ${argv.join(" ")}`);
  return isGroup(found) ? groupUsage(found) : usage(found);
}

async function start(configFile: string | undefined): Promise<void> {
  let config: unknown = {};
  if (configFile) {
    const text = await readFile(configFile, "utf8");
    try {
      config = parseJson(text);
    } catch (err) {
      throw new Error(`${configFile} is not valid JSON: ${(err as Error).message}`);
    }
  }
  const hub = await EdgeHub.start(config as Parameters<typeof EdgeHub.start>[0]);
  const c = hub.config;
  process.stdout.write(
    [
      `edgehub running as ${c.hostname}`,
      `  MQTT over TLS  ${c.listen.host}:${hub.ports.mqtts}`,
      `  service API    https://${c.hostname}:${hub.ports.https}/`,
      `  data           ${c.dataDir}`,
      `  CA for clients ${hub.caFile}`,
      `  service connection string in ${hub.serviceConnectionStringFile}`,
      `devices connect with HostName=${c.hostname};DeviceId=…;SharedAccessKey=…;GatewayHostName=${c.hostname}`,
      "",
    ].join("\n"),
  );
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second signal does not wait for the clean stop: 128 + the signal's number, as a shell reports it.
    if (stopping) process.exit(128 + (constants.signals[signal] ?? 0));
    stopping = true;
    process.stdout.write(`${signal}: stopping\n`);
    hub.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`edgehub: error while stopping: ${(err as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", () => stop("SIGINT"));
  process.on("SIGTERM", () => stop("SIGTERM"));
}

async function main(argv: string[]): Promise<void> {
  if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h") {
    process.stdout.write(`${overview()}\n`);
    if (argv.length === 0) process.exitCode = 2;
    return;
  }
  if (argv[0] === "--version" || argv[0] === "-v") {
    const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  if (argv[0] === "help") {
    process.stdout.write(`${help(argv.slice(1))}\n`);
    return;
  }
  const { found, rest } = resolve(argv);
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

main(process.argv.slice(2)).catch((err: unknown) => {
  // One line: the reason (a hub's message may carry newlines), then the usage for usage errors.
  const oneLine = (text: string) => text.replace(/\s*\n\s*/g, " ");
  if (err instanceof UsageError) {
    const how = err.command
      ? `usage: ${synopsis(err.command)}\n(edgehub help ${err.command.name} for more)`
      : overview();
    process.stderr.write(`edgehub: ${oneLine(err.message)}\n${how}\n`);
    process.exit(2);
  }
  const code = err instanceof EdgeHubError ? ` [${err.code}]` : "";
  process.stderr.write(`edgehub: ${oneLine((err as Error).message)}${code}\n`);
  process.exit(1);
});
