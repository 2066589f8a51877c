/**
 * `edgehub start [--config edgehub.json] [--json]`: runs a hub until SIGINT or SIGTERM. It
 * says when it is ready on stdout: lines for people, or with `--json` one JSON line (the
 * bound ports, hostname, data dir, CA and service connection string files) that a daemon
 * manager or a test parses instead of scraping text. Its usage lists every config key from
 * their one declaration (ts/config/schema.ts).
 */
import { readFile } from "node:fs/promises";
import { constants } from "node:os";
import { resolve } from "node:path";
import { configUsage } from "../config/config.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { EdgeHub } from "../hub.js";
import { parseJson } from "../json.js";
import { type CommandSpec, jsonLine } from "./command.js";

/** The `--json` line `edgehub start` prints once the hub listens. */
export interface ReadyLine {
  event: "ready";
  pid: number;
  hostname: string;
  /** The interface the device-facing listeners are bound to (`listen.host`). */
  host: string;
  /** Ports actually bound; `amqps` and `metrics` are 0 when that listener is off. */
  ports: { mqtts: number; https: number; amqps: number; metrics: number };
  /** Absolute paths. */
  dataDir: string;
  caFile: string;
  serviceConnectionStringFile: string;
}

/** What a ready hub prints with `--json`. */
export function readyLine(hub: EdgeHub): ReadyLine {
  const c = hub.config;
  return {
    event: "ready",
    pid: process.pid,
    hostname: c.hostname,
    host: c.listen.host,
    ports: hub.ports,
    dataDir: resolve(c.dataDir),
    caFile: resolve(hub.caFile),
    serviceConnectionStringFile: resolve(hub.serviceConnectionStringFile),
  };
}

/** What a ready hub prints for people. */
function readyText(hub: EdgeHub): string {
  const c = hub.config;
  return [
    `edgehub running as ${c.hostname}`,
    `  MQTT over TLS  ${c.listen.host}:${hub.ports.mqtts}`,
    ...(hub.ports.amqps > 0 ? [`  AMQP over TLS  ${c.listen.host}:${hub.ports.amqps}`] : []),
    `  service API    https://${c.hostname}:${hub.ports.https}/`,
    `  data           ${c.dataDir}`,
    `  CA for clients ${hub.caFile}`,
    `  service connection string in ${hub.serviceConnectionStringFile}`,
    // A root's events, for Event Hubs consumers (the string holds the key: not printed here).
    ...(hub.eventHubConnectionString && hub.ports.amqps > 0
      ? [
          `  Event Hubs     ${c.eventHub.name} at amqps://${c.hostname}:${hub.ports.amqps} (edgehub connection-string show --default-eventhub)`,
        ]
      : []),
    `devices connect with HostName=${c.hostname};DeviceId=…;SharedAccessKey=…;GatewayHostName=${c.hostname}`,
    "",
  ].join("\n");
}

async function start(configFile: string | undefined, json: boolean): Promise<void> {
  let config: unknown = {};
  if (configFile) {
    let text: string;
    try {
      text = await readFile(configFile, "utf8");
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      throw new EdgeHubError(
        ErrorCodes.CONFIG_INVALID,
        `cannot read the configuration ${configFile} (${code})`,
        {
          cause: err,
        },
      );
    }
    try {
      config = parseJson(text);
    } catch (err) {
      throw new Error(`${configFile} is not valid JSON: ${(err as Error).message}`);
    }
  }
  // Loaded here, not at the top: the other commands never load the hub (nor the native add-on).
  const { EdgeHub } = await import("../hub.js");
  const hub = await EdgeHub.start(config as Parameters<typeof EdgeHub.start>[0]);
  process.stdout.write(json ? jsonLine(readyLine(hub)) : readyText(hub));
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    // A second signal does not wait for the clean stop: 128 + the signal's number, as a shell reports it.
    if (stopping) process.exit(128 + (constants.signals[signal] ?? 0));
    stopping = true;
    process.stdout.write(json ? jsonLine({ event: "stopping", signal }) : `${signal}: stopping\n`);
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

/** `edgehub start`. */
export const startCommand: CommandSpec = {
  name: "start",
  summary: "run the hub until interrupted (SIGINT or SIGTERM)",
  options: [
    {
      name: "config",
      short: "c",
      value: "<file.json>",
      help: "JSON configuration, keys below (docs/operating.md); without it the embedded defaults",
    },
  ],
  notes:
    "Ready: lines for people on stdout; --json: one line {event: ready, pid, hostname, host, ports {mqtts, https,\n" +
    "amqps, metrics}, dataDir, caFile, serviceConnectionStringFile}, and {event: stopping, signal} on SIGINT/SIGTERM.\n" +
    "Exit codes: 0 stopped cleanly, 1 error, 2 usage, 128 + signal number when a second signal cuts the stop short.\n" +
    `config keys (a.b is key b inside object a):\n${configUsage()}`,
  run: (input) => start(input.opt("config"), input.json),
};
