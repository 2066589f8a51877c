/** The JSON shapes of IoT Hub's service API: devices, modules, twins, events, method calls. */
import { createHash } from "node:crypto";
import type { Authentication, Device, Module } from "../auth/registry.js";
import { record } from "../json.js";
import type { MethodCall } from "../methods/direct-methods.js";
import type { StoredMessage } from "../store/index.js";
import type { Twin } from "../twin/twins.js";
import { ApiError } from "./http.js";

const EPOCH = "0001-01-01T00:00:00Z";

function authenticationJson(a: Authentication): Record<string, unknown> {
  return {
    type: a.type,
    symmetricKey: a.symmetricKey ?? { primaryKey: null, secondaryKey: null },
    x509Thumbprint: a.x509Thumbprint ?? { primaryThumbprint: null, secondaryThumbprint: null },
  };
}

/** A device as `GET /devices/{id}` returns it. */
export function deviceJson(d: Device, connected: boolean): Record<string, unknown> {
  return {
    deviceId: d.deviceId,
    generationId: d.generationId,
    etag: d.etag,
    connectionState: connected ? "Connected" : "Disconnected",
    status: d.status,
    statusReason: d.statusReason ?? null,
    connectionStateUpdatedTime: EPOCH,
    statusUpdatedTime: EPOCH,
    lastActivityTime: EPOCH,
    cloudToDeviceMessageCount: 0,
    authentication: authenticationJson(d.authentication),
    capabilities: d.capabilities,
    deviceScope: d.deviceScope ?? null,
    parentScopes: d.parentScopes,
  };
}

/** A module as `GET /devices/{id}/modules/{m}` returns it. */
export function moduleJson(m: Module, connected: boolean): Record<string, unknown> {
  return {
    deviceId: m.deviceId,
    moduleId: m.moduleId,
    generationId: m.generationId,
    etag: m.etag,
    managedBy: m.managedBy ?? null,
    connectionState: connected ? "Connected" : "Disconnected",
    connectionStateUpdatedTime: EPOCH,
    lastActivityTime: EPOCH,
    cloudToDeviceMessageCount: 0,
    authentication: authenticationJson(m.authentication),
  };
}

/** A twin's etag, quoted as IoT Hub sends it: it changes with every desired, reported or tags change. */
export function twinEtag(twin: Twin): string {
  const tags = createHash("sha256").update(JSON.stringify(twin.tags)).digest("base64url").slice(0, 8);
  return `"${Buffer.from(`${twin.desired.version}.${twin.reported.version}.${tags}`).toString("base64")}"`;
}

/** A twin as `GET /twins/{id}` returns it. */
export function twinJson(
  device: Device,
  twin: Twin,
  moduleId: string | undefined,
  connected: boolean,
): Record<string, unknown> {
  return {
    deviceId: device.deviceId,
    ...(moduleId === undefined ? {} : { moduleId }),
    etag: twinEtag(twin),
    deviceEtag: device.etag,
    status: device.status,
    connectionState: connected ? "Connected" : "Disconnected",
    version: twin.desired.version + twin.reported.version,
    tags: twin.tags,
    properties: {
      desired: { ...twin.desired.properties, $metadata: {}, $version: twin.desired.version },
      reported: { ...twin.reported.properties, $metadata: {}, $version: twin.reported.version },
    },
    capabilities: device.capabilities,
    ...(device.deviceScope ? { deviceScope: device.deviceScope } : {}),
    parentScopes: device.parentScopes,
  };
}

/** IoT Hub's names of the system properties; a Map, so a property named `__proto__` finds nothing. */
const SYSTEM = new Map<string, string>([
  ["$.mid", "messageId"],
  ["$.cid", "correlationId"],
  ["$.ct", "contentType"],
  ["$.ce", "contentEncoding"],
  ["$.cdid", "connectionDeviceId"],
  ["$.cmid", "connectionModuleId"],
  ["$.on", "outputName"],
  ["$.uid", "userId"],
]);

/** A stored device-to-cloud message as `GET /messages/events` returns it. */
export function eventJson(m: StoredMessage): Record<string, unknown> {
  // Without prototypes: a property named `__proto__` is one more property.
  const properties = record<string>();
  const systemProperties = record<string>();
  for (const [k, v] of Object.entries(m.properties)) {
    const sys = SYSTEM.get(k);
    if (sys) systemProperties[sys] = v;
    else if (!k.startsWith("$.")) properties[k] = v;
  }
  return {
    offset: m.offset,
    deviceId: m.properties["$.cdid"],
    ...(m.properties["$.cmid"] ? { moduleId: m.properties["$.cmid"] } : {}),
    enqueuedTime: new Date(m.enqueuedAt).toISOString(),
    properties,
    systemProperties,
    body: m.body.toString("base64"),
  };
}

/** A method call as `POST …/methods` takes it (the service SDKs' and `ModuleClient.invokeMethod`'s body). */
export function methodCallOf(body: unknown): MethodCall {
  const call = (body ?? {}) as Record<string, unknown>;
  if (typeof call.methodName !== "string" || call.methodName === "")
    throw new ApiError(400, "ArgumentInvalid", "methodName is required");
  const out: MethodCall = { methodName: call.methodName, payload: call.payload };
  for (const key of ["responseTimeoutInSeconds", "connectTimeoutInSeconds"] as const) {
    const v = call[key];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0)
      throw new ApiError(400, "ArgumentInvalid", `${key} must be a number of seconds`);
    out[key] = v;
  }
  return out;
}
