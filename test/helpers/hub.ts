/** Hubs and official-SDK device clients for tests, closed after each test. */
import { Client } from "azure-iot-device";
import { Amqp } from "azure-iot-device-amqp";
import { Mqtt } from "azure-iot-device-mqtt";
import { afterEach } from "vitest";
import { EdgeHub, type HubConfigInput, type Logger, silentLogger } from "../../ts/index.js";
// Registered first so its afterEach (removing temp dirs) runs after the hubs below are closed.
import "./fixtures.js";

const hubs: EdgeHub[] = [];
const clients: Client[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

/** A root hub on a free port of 127.0.0.1, hostname `localhost`, data in `dataDir`; logs to `log` (default none). */
export async function startHub(
  dataDir: string,
  extra: HubConfigInput = {},
  log: Logger = silentLogger,
): Promise<EdgeHub> {
  const hub = await EdgeHub.start(
    { hostname: "localhost", dataDir, listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: 0 }, ...extra },
    log,
  );
  hubs.push(hub);
  return hub;
}

/** Closes `hub` now (e.g. to restart it on the same data). */
export async function stopHub(hub: EdgeHub): Promise<void> {
  hubs.splice(hubs.indexOf(hub), 1);
  await hub.close();
}

/** The device protocols of the official SDK the hub serves (AMQP needs `listen.amqps`: {@link BOTH_HEADS}). */
export type Transport = "mqtt" | "amqp";

/** Listeners for tests run over both heads: every port free. */
export const BOTH_HEADS = { listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: 0 } };

/** The device connection string through the hub as gateway, with `key` (default: the primary key). */
export function connectionString(
  hub: EdgeHub,
  deviceId: string,
  key?: string,
  transport: Transport = "mqtt",
): string {
  const k = key ?? hub.registry.getDevice(deviceId)?.authentication.symmetricKey?.primaryKey ?? "";
  const port = transport === "mqtt" ? hub.ports.mqtts : hub.ports.amqps;
  return `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${k};GatewayHostName=localhost:${port}`;
}

/** An official SDK client of `deviceId` (registered if new) over `transport`, trusting the hub's CA; not yet opened. */
export async function deviceClient(
  hub: EdgeHub,
  deviceId: string,
  key?: string,
  transport: Transport = "mqtt",
): Promise<Client> {
  if (!hub.registry.getDevice(deviceId)) await hub.registry.createDevice({ deviceId });
  const client = Client.fromConnectionString(
    connectionString(hub, deviceId, key, transport),
    transport === "mqtt" ? Mqtt : Amqp,
  );
  await client.setOptions({ ca: hub.caCertificate });
  clients.push(client);
  return client;
}

/** {@link deviceClient}, opened. */
export async function connectedDevice(
  hub: EdgeHub,
  deviceId: string,
  transport: Transport = "mqtt",
): Promise<Client> {
  const client = await deviceClient(hub, deviceId, undefined, transport);
  await client.open();
  return client;
}

/** A logger that keeps every event, for tests that check what the hub reported. */
export function recordingLogger(): Logger & {
  events: Array<{ event: string; fields: Record<string, unknown> }>;
} {
  const events: Array<{ event: string; fields: Record<string, unknown> }> = [];
  return { events, log: (_level, event, fields = {}) => void events.push({ event, fields }) };
}
