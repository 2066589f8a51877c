/**
 * An edge's scope sync for tests (real store, sealed registry) and the records a parent
 * answers with, as a real root writes them (`deviceJson`, `moduleJson`).
 */
import { writeFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { type Device, Registry } from "../../ts/auth/registry.js";
import { SecretBox } from "../../ts/auth/secret-box.js";
import { loadConfig, type ParentConfig, type ParentConfigInput } from "../../ts/config/config.js";
import { deviceJson, moduleJson } from "../../ts/service/shapes.js";
import { ParentCredentials } from "../../ts/upstream/credentials.js";
import { EdgeHubModule } from "../../ts/upstream/edgehub-module.js";
import { ScopeSync, type ScopeSyncOptions } from "../../ts/upstream/scope-sync.js";
import { openStore, tempDir } from "./fixtures.js";
import { recordingLogger } from "./hub.js";
import { RawHttpsParent } from "./raw-https-parent.js";

export const KEY = Buffer.alloc(32, 7).toString("base64");

/** A device as a real root answers it, enabled, with SAS keys. */
export function device(deviceId: string, over: Partial<Device> = {}): Record<string, unknown> {
  return deviceJson(
    {
      deviceId,
      generationId: "638000000000000000",
      etag: "AAAAAAAAAAE=",
      status: "enabled",
      authentication: { type: "sas", symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
      capabilities: { iotEdge: false },
      parentScopes: [],
      ...over,
    },
    false,
  );
}

/** An edge device, child of `parentId` when given. */
export function edgeDevice(edgeId: string, parentId?: string): Record<string, unknown> {
  return device(edgeId, {
    capabilities: { iotEdge: true },
    deviceScope: `ms-azure-iot-edge://${edgeId}-638000000000000000`,
    parentScopes: parentId ? [`ms-azure-iot-edge://${parentId}-638000000000000000`] : [],
  });
}

export function module(deviceId: string, moduleId: string): Record<string, unknown> {
  return moduleJson(
    {
      deviceId,
      moduleId,
      generationId: "638000000000000001",
      etag: "AAAAAAAAAAE=",
      authentication: { type: "sas", symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
    },
    false,
  );
}

export function json(res: ServerResponse, body: unknown): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(200, { "content-type": "application/json" }).end(text);
}

/** An edge's scope sync whose parent is `parent` (or a real hub's parent config); retries wait 10 ms. */
export async function edgeOf(parent: RawHttpsParent | ParentConfigInput, options: ScopeSyncOptions = {}) {
  const dir = await tempDir();
  let input: ParentConfigInput;
  if (parent instanceof RawHttpsParent) {
    await writeFile(join(dir, "parent-ca.pem"), parent.ca);
    input = {
      hostname: "localhost",
      httpsPort: parent.port,
      deviceId: parent.edgeId,
      sharedAccessKey: parent.key,
      caFile: join(dir, "parent-ca.pem"),
    };
  } else input = parent;
  const config = loadConfig({ hostname: "127.0.0.1", dataDir: dir, parent: input }).parent as ParentConfig;
  const store = await openStore(join(dir, "store"));
  const registry = await Registry.open(store, await SecretBox.fromKeyFile(join(dir, "secrets.key")));
  const log = recordingLogger();
  // The scope call carries the `$edgeHub` token: the raw parent's key is that module's; a
  // real hub's is fetched from it as the upstream fetches it (with the device key).
  const credentials = new ParentCredentials(config);
  if (parent instanceof RawHttpsParent) {
    // The key the parent holds now: a test that changes the parent's makes the edge's wrong.
    const key = parent.key;
    credentials.useModuleKey(() => key);
  } else {
    const module = new EdgeHubModule(
      config,
      credentials,
      await SecretBox.fromKeyFile(join(dir, "m.key")),
      dir,
      log,
    );
    if (!(await module.fetch())) throw new Error("the parent did not give the $edgeHub keys");
    credentials.useModuleKey(() => module.keys?.primaryKey);
  }
  const sync = new ScopeSync(config, credentials, registry, log, {
    retryDelayMs: () => 10,
    ...options,
  });
  const ids = () =>
    registry
      .listDevices()
      .map((d) => d.deviceId)
      .sort();
  const reasons = () => log.events.filter((e) => e.event === "scope-sync-failed").map((e) => e.fields.reason);
  return { sync, registry, log, ids, reasons, config, credentials };
}

/** Syncs a first, good scope (the edge and `keep-me`), so a failed sync has something to leave alone. */
export async function syncedEdge(parent: RawHttpsParent) {
  const edge = await edgeOf(parent);
  const answer = parent.answer;
  parent.answer = (_n, _call, res) =>
    json(res, { devices: [edgeDevice("edge1"), device("keep-me")], modules: [] });
  if (!(await edge.sync.sync())) throw new Error(`first sync failed: ${JSON.stringify(edge.reasons())}`);
  parent.calls.length = 0;
  parent.answer = answer;
  return edge;
}

/** The scope sync of a child edge `deviceId` (device key `key`) whose parent is the in-process edge hub `parent`. */
export function childEdgeOf(
  parent: { ports: { https: number }; caFile: string },
  deviceId: string,
  key: string,
) {
  return edgeOf({
    hostname: "127.0.0.1",
    hubHostname: "localhost",
    httpsPort: parent.ports.https,
    deviceId,
    sharedAccessKey: key,
    caFile: parent.caFile,
  });
}
