#!/usr/bin/env node
/**
 * The `edgehub` command. `edgehub start [--config edgehub.json]` runs a hub until SIGINT or
 * SIGTERM; with no config it runs on the embedded defaults (data in ./edgehub-data, a
 * development CA, MQTT over TLS on 8883). `edgehub identity …` manages the parent/child
 * relations of a running hub's devices (./identity.ts).
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { EdgeHubError } from "../errors.js";
import { EdgeHub } from "../hub.js";
import { parseJson } from "../json.js";
import { runIdentityCommand } from "./identity.js";
import { UsageError } from "./service-client.js";
import { STATUS_USAGE, statusCommand } from "./status.js";

const USAGE = `usage: edgehub start [--config <file.json>]
       edgehub identity add-children --device-id <edge> (--child-list <id,…> | --where <condition>)
                                     [--force] [<login>]
       edgehub identity remove-children --device-id <edge> (--child-list <id,…> | --remove-all) [<login>]
       edgehub identity list-children --device-id <edge> [<login>]
${STATUS_USAGE}

  start         run the hub until interrupted
  --config      JSON configuration (keys: hostname, dataDir, listen {host, mqtts, https},
                tls {certFile, keyFile, caFile}, storeAndForwardConfiguration
                {timeToLiveSecs, storeLimits {maxSizeBytes}}, logLevel, limits
                {maxConnections, maxUnauthenticatedPerAddress, tlsHandshakeTimeoutMs,
                mqttConnectTimeoutMs, httpHeadersTimeoutMs, httpRequestTimeoutMs,
                httpKeepAliveTimeoutMs, maxPendingMethodCallsPerTarget,
                maxPendingMethodCallsPerCaller, maxPendingMethodBytes}, metrics {host, port}
                (default 127.0.0.1:9600, false: off; /metrics, /healthz, /readyz, status page))

  identity      parent/child relations of edge devices, through the running hub's service API
  --device-id   the parent: an edge device
  --child-list  comma-separated device ids
  --where       a condition of SELECT * FROM devices WHERE …, e.g. "capabilities.iotEdge = false"
                (never selects the parent itself)
  --force       move children that have another parent
  --remove-all  remove every child of the parent
  list-children prints one child id per line

  <login>       --login <service connection string> or --data-dir <dir> (reads
                <dir>/service-connection-string; default ./edgehub-data);
                --port <https port> (default 8443);
                --ca <file> (default <dataDir>/certs/ca.pem when present)`;

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
  const stop = (signal: string) => {
    if (stopping) return;
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
  if (argv[0] === "status")
    return argv.includes("--help") ? void process.stdout.write(`${USAGE}\n`) : statusCommand(argv.slice(1));
  if (argv[0] === "identity") {
    if (argv.includes("--help") || argv.includes("-h")) {
      process.stdout.write(`${USAGE}\n`);
      return;
    }
    await runIdentityCommand(argv.slice(1), {
      out: (text) => process.stdout.write(text),
      err: (text) => process.stderr.write(text),
    });
    return;
  }
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: "string", short: "c" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help || positionals[0] !== "start" || positionals.length > 1) {
    process.stdout.write(`${USAGE}\n`);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  await start(values.config);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`edgehub: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  const code = err instanceof EdgeHubError ? ` [${err.code}]` : "";
  process.stderr.write(`edgehub: ${(err as Error).message}${code}\n`);
  process.exit(1);
});
