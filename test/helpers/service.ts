/** Calls to a hub's service API over HTTPS with an `iothubowner` token, as the service SDKs make them. */
import https, { Agent } from "node:https";
import { NoRetry } from "azure-iot-common";
import { Client, Registry } from "azure-iothub";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";

export interface Reply {
  status: number;
  body: unknown;
}

export function serviceToken(hub: EdgeHub, key?: string): string {
  const k = key ?? /SharedAccessKey=([^;]+)/.exec(hub.serviceConnectionString)?.[1] ?? "";
  return createSasToken(hub.config.hostname, k, Math.floor(Date.now() / 1000) + 600, "iothubowner");
}

export function call(
  hub: EdgeHub,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const payload =
    body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "localhost",
        port: hub.ports.https,
        path: `${path}${path.includes("?") ? "&" : "?"}api-version=2021-04-12`,
        method,
        ca: hub.caCertificate,
        headers: { authorization: serviceToken(hub), "content-type": "application/json", ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined });
        });
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/**
 * {@link call} as a module makes it through its hub (`ModuleClient.invokeMethod`): signed
 * with the module's own key, naming itself in `x-ms-edge-moduleId`.
 */
export function callAsModule(
  hub: EdgeHub,
  method: string,
  path: string,
  body: unknown,
  module: { deviceId: string; moduleId: string; key: string },
): Promise<Reply> {
  const { deviceId, moduleId, key } = module;
  const token = createSasToken(
    `${hub.config.hostname}/devices/${deviceId}/modules/${moduleId}`,
    key,
    Math.floor(Date.now() / 1000) + 600,
  );
  return call(hub, method, path, body, {
    authorization: token,
    "x-ms-edge-moduleid": `${deviceId}/${moduleId}`,
  });
}

/** An https agent that dials the hub's port whatever port the SDK asks for (it always asks for 443). */
function hubPortAgent(hub: EdgeHub): Agent {
  const port = hub.ports.https;
  class HubPort extends Agent {
    override createConnection(options: object, done: unknown): never {
      return (
        Agent.prototype as unknown as { createConnection: (o: object, d: unknown) => never }
      ).createConnection.call(this, { ...options, port }, done);
    }
  }
  return new HubPort({ keepAlive: false });
}

/** Points an SDK object's private REST client at `hub` (its `setOptions` is the documented way to pass an agent and CA). */
function onHub(sdk: Registry | Client, hub: EdgeHub): void {
  const rest = (sdk as unknown as { _restApiClient: { setOptions(o: object): void } })._restApiClient;
  rest.setOptions({ ca: hub.caCertificate, http: { agent: hubPortAgent(hub) } });
}

/**
 * The official `azure-iothub` Registry on `hub`: the SDK's own requests, headers and
 * parsing. Only the TCP port is the hub's (the SDK always dials 443, which one test at a
 * time may bind) and the hub's CA is trusted.
 */
export function sdkRegistry(hub: EdgeHub): Registry {
  const registry = Registry.fromConnectionString(hub.serviceConnectionString);
  onHub(registry, hub);
  return registry;
}

/**
 * The official `azure-iothub` service Client on `hub` (as {@link sdkRegistry}), for direct
 * methods; it does not retry, so a refusal reaches the test as the SDK's error.
 */
export function sdkClient(hub: EdgeHub): Client {
  const client = Client.fromConnectionString(hub.serviceConnectionString);
  onHub(client, hub);
  client.setRetryPolicy(new NoRetry());
  return client;
}
