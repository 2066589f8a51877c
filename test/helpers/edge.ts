/** A root hub and edge hubs under it, with official-SDK children of the edge. */
import { Client } from "azure-iot-device";
import { Amqp } from "azure-iot-device-amqp";
import { Mqtt } from "azure-iot-device-mqtt";
import { afterEach } from "vitest";
import type { EdgeHub, HubConfigInput, Logger, ParentConfigInput, StoredMessage } from "../../ts/index.js";
import { eventually } from "./fixtures.js";
import { startHub, type Transport } from "./hub.js";

const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
});

/** The root (hostname `localhost`). */
export function startRoot(dataDir: string, extra: HubConfigInput = {}): Promise<EdgeHub> {
  return startHub(dataDir, extra);
}

/** Registers `edgeId` as an edge device on `root` (if new) and the parent config that logs in as it. */
export async function edgeIdentity(
  root: EdgeHub,
  edgeId: string,
  port = root.ports.mqtts,
): Promise<ParentConfigInput> {
  const edge =
    root.registry.getDevice(edgeId) ??
    (await root.registry.createDevice({ deviceId: edgeId, capabilities: { iotEdge: true } }));
  return {
    hostname: "localhost",
    port,
    httpsPort: root.ports.https,
    deviceId: edgeId,
    sharedAccessKey: edge.authentication.symmetricKey?.primaryKey ?? "",
    caFile: root.caFile,
    maxBackoffMs: 300,
  };
}

/**
 * An edge hub (hostname `127.0.0.1`, so children tell it apart from the root) whose parent
 * is `parent`.
 */
export function startEdge(
  dataDir: string,
  parent: ParentConfigInput,
  extra: HubConfigInput = {},
  log?: Logger,
): Promise<EdgeHub> {
  return startHub(dataDir, { hostname: "127.0.0.1", parent, ...extra }, log);
}

/** Resolves once `edge` has synced its whole device scope from its parent (bounded). */
export async function synced(edge: EdgeHub): Promise<void> {
  await eventually("scope synced", () => edge.upstream?.scope?.lastSyncedAt !== undefined);
}

/** Registers `deviceId` on the root as a child of `edgeId` (if new); returns its primary key. */
export async function childOf(root: EdgeHub, edgeId: string, deviceId: string): Promise<string> {
  const scope = root.registry.getDevice(edgeId)?.deviceScope;
  const d =
    root.registry.getDevice(deviceId) ?? (await root.registry.createDevice({ deviceId, deviceScope: scope }));
  return d.authentication.symmetricKey?.primaryKey ?? "";
}

/** Where children reach an edge hub: its MQTT port (and AMQP port, when it listens) and its CA. */
export interface Gateway {
  port: number;
  amqps?: number;
  ca: string;
}

/** The gateway of an in-process edge hub. */
export function gatewayOf(edge: EdgeHub): Gateway {
  return { port: edge.ports.mqtts, amqps: edge.ports.amqps, ca: edge.caCertificate };
}

/** An SDK client of a child through the edge as gateway (token audience: the root), over `transport`. */
export async function childClient(
  gateway: Gateway,
  deviceId: string,
  key: string,
  transport: Transport = "mqtt",
): Promise<Client> {
  const port = transport === "mqtt" ? gateway.port : gateway.amqps;
  const cs = `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=127.0.0.1:${port}`;
  const client = Client.fromConnectionString(cs, transport === "mqtt" ? Mqtt : Amqp);
  await client.setOptions({ ca: gateway.ca });
  clients.push(client);
  return client;
}

/** Everything in the root's built-in events queue. */
export async function rootEvents(root: EdgeHub): Promise<StoredMessage[]> {
  const out: StoredMessage[] = [];
  for (let from = 0; ; ) {
    const batch = await root.store.read("$events", { from, limit: 5000 });
    if (batch.length === 0) return out;
    out.push(...batch);
    from = (batch.at(-1)?.offset ?? 0) + 1;
  }
}
