/**
 * `edgehub start [--config edgehub.json]`: runs a hub until SIGINT or SIGTERM. Its usage
 * lists every config key from their one declaration (ts/config/schema.ts).
 */
import { readFile } from "node:fs/promises";
import { constants } from "node:os";
import { configUsage } from "../config/config.js";
import { EdgeHub } from "../hub.js";
import { parseJson } from "../json.js";
import type { CommandSpec } from "./command.js";

/** The `start` command. */
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
  notes: `config keys (a.b is key b inside object a):\n${configUsage()}`,
  run: (input) => start(input.opt("config")),
};

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
