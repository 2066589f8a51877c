/**
 * The service API's twin routes: a device's or module's twin (GET, PATCH with If-Match),
 * direct methods on it, and cloud-to-device messages (sent, and a device's queue purged).
 * Rows in ./api.ts.
 */
import type { Device } from "../auth/registry.js";
import { record } from "../json.js";
import { type Call, deviceOf } from "./context.js";
import { checkIfMatch, ifMatchOf } from "./etag.js";
import { ApiError, readBody, readJson, sendJson } from "./http.js";
import { C2D_MAX_BYTES, sendServiceC2D } from "./service-side.js";
import { methodCallOf, twinEtag, twinJson } from "./shapes.js";

/** The device and, for a module's twin, the module a `/twins/…` path names; 404 when either is unknown. */
function twinTarget({ ctx, params }: Call): {
  device: Device;
  moduleId: string | undefined;
  clientId: string;
} {
  const id = params.get("id");
  const device = deviceOf(ctx, id);
  const moduleId = params.optional("moduleId");
  if (moduleId === undefined) return { device, moduleId, clientId: id };
  if (!ctx.registry.getModule(id, moduleId))
    throw new ApiError(404, "ModuleNotFound", `module ${id}/${moduleId} not found`);
  return { device, moduleId, clientId: `${id}/${moduleId}` };
}

export async function getTwin(call: Call): Promise<void> {
  const { ctx, res } = call;
  const { device, moduleId, clientId } = twinTarget(call);
  sendJson(res, 200, twinJson(device, await ctx.twins.get(clientId), moduleId, ctx.isConnected(clientId)));
}

export async function patchTwin(call: Call): Promise<void> {
  const { ctx, req, res } = call;
  const { device, moduleId, clientId } = twinTarget(call);
  const body = ((await readJson(req)) ?? {}) as { tags?: unknown; properties?: { desired?: unknown } };
  // A stale etag loses (412), as on IoT Hub; the SDK's updateTwin always sends one, or "*".
  checkIfMatch(
    ifMatchOf(req.headers["if-match"]),
    twinEtag(await ctx.twins.get(clientId)),
    `twin ${clientId}`,
  );
  if (body.tags !== undefined) await ctx.twins.patchTags(clientId, body.tags);
  const desired = body.properties?.desired;
  if (desired === null) {
    // `desired: null` clears them all: every current key patched to null.
    const current = (await ctx.twins.get(clientId)).desired.properties;
    const clear = Object.fromEntries(Object.keys(current).map((k) => [k, null]));
    if (Object.keys(clear).length > 0) await ctx.twins.patchDesired(clientId, clear);
  } else if (desired !== undefined) await ctx.twins.patchDesired(clientId, desired);
  sendJson(res, 200, twinJson(device, await ctx.twins.get(clientId), moduleId, ctx.isConnected(clientId)));
}

/** `POST /twins/{d}[/modules/{m}]/methods`: a direct method call, answered when the target answers. */
export async function invokeMethod(call: Call): Promise<void> {
  const { ctx, req, res, caller } = call;
  const { clientId } = twinTarget(call);
  const r = await ctx.methods.invoke(clientId, methodCallOf(await readJson(req)), caller);
  if (r.status === 404)
    throw new ApiError(404, "DeviceNotOnline", `${clientId} is not connected or not listening for methods`);
  if (r.status === 504) throw new ApiError(504, "GatewayTimeout", `${clientId} did not answer in time`);
  if (r.status === 429)
    throw new ApiError(429, "ThrottleBacklogLimitExceeded", (r.payload as { message: string }).message);
  sendJson(res, 200, r);
}

/** `POST /devices/{d}/messages/deviceBound`: a cloud-to-device message, properties from `iothub-*` headers. */
export async function sendC2D({ ctx, req, res, params }: Call): Promise<void> {
  const id = params.get("id");
  deviceOf(ctx, id);
  const body = await readBody(req, C2D_MAX_BYTES);
  const properties = record<string>();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith("iothub-app-") && typeof v === "string") properties[k.slice("iothub-app-".length)] = v;
  }
  const h = (name: string) =>
    typeof req.headers[name] === "string" ? (req.headers[name] as string) : undefined;
  const message = {
    body,
    properties,
    messageId: h("iothub-messageid"),
    correlationId: h("iothub-correlationid"),
    contentType: h("content-type"),
    contentEncoding: h("content-encoding"),
  };
  await sendServiceC2D(ctx.registry, ctx.delivery, id, {
    ...(Object.fromEntries(Object.entries(message).filter(([, v]) => v !== undefined)) as { body: Buffer }),
    ack: h("iothub-ack"),
  });
  res.writeHead(204).end();
}

/**
 * `DELETE /devices/{d}/commands`: removes every C2D message queued for the device, as IoT
 * Hub's purge (the .NET service SDK's `PurgeMessageQueueAsync`); answers its
 * `PurgeMessageQueueResult`. On a root, messages whose sender asked for negative feedback get
 * a `Purged` record.
 */
export async function purgeC2D({ ctx, res, params }: Call): Promise<void> {
  const id = params.get("id");
  deviceOf(ctx, id);
  const totalMessagesPurged = await ctx.delivery.purgeC2D(id);
  sendJson(res, 200, { deviceId: id, totalMessagesPurged });
}
