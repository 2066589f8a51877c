/**
 * The service API's identity registry routes, with IoT Hub's paths and shapes: devices
 * (PUT/GET/DELETE, list, bulk, query over twins) and their modules. Rows in ./api.ts.
 */
import type { Device } from "../auth/registry.js";
import { applyBulk } from "./bulk.js";
import { type Call, deviceOf, type ServiceApiContext } from "./context.js";
import { checkIfMatch, ifMatchOf } from "./etag.js";
import { ApiError, readJson, sendJson } from "./http.js";
import { putModule as createOrReplaceModule } from "./module-identity.js";
import { matches, parseQuery } from "./query.js";
import { deviceJson, moduleJson, twinJson } from "./shapes.js";

/** `POST /devices/query`: the twins matching IoT Hub's query (the subset ./query.ts parses). */
export async function queryDevices({ ctx, req, res }: Call): Promise<void> {
  const body = (await readJson(req)) as { query?: unknown } | undefined;
  const conditions = parseQuery(body?.query);
  const out: unknown[] = [];
  for (const d of ctx.registry.listDevices()) {
    const doc = twinJson(d, await ctx.twins.get(d.deviceId), undefined, ctx.isConnected(d.deviceId));
    if (matches(doc, conditions)) out.push(doc);
  }
  sendJson(res, 200, out);
}

/** `POST /devices`: bulk create, update and delete. */
export async function bulkDevices({ ctx, req, res }: Call): Promise<void> {
  const result = await applyBulk(ctx.registry, await readJson(req), (deviceId) =>
    removeDevice(ctx, deviceId),
  );
  sendJson(res, result.isSuccessful ? 200 : 400, result);
}

export function listDevices({ ctx, res }: Call): void {
  sendJson(
    res,
    200,
    ctx.registry.listDevices().map((d) => deviceJson(d, ctx.isConnected(d.deviceId))),
  );
}

export function getDevice({ ctx, res, params }: Call): void {
  const id = params.get("id");
  sendJson(res, 200, deviceJson(deviceOf(ctx, id), ctx.isConnected(id)));
}

export async function deleteDevice({ ctx, req, res, params }: Call): Promise<void> {
  const id = params.get("id");
  checkIfMatch(ifMatchOf(req.headers["if-match"]), deviceOf(ctx, id).etag, `device ${id}`);
  await removeDevice(ctx, id);
  res.writeHead(204).end();
}

export async function putDevice({ ctx, req, res, params }: Call): Promise<void> {
  const id = params.get("id");
  const body = ((await readJson(req)) ?? {}) as Partial<Device>;
  if (body.deviceId !== undefined && body.deviceId !== id) {
    throw new ApiError(400, "ArgumentInvalid", "deviceId in the body differs from the path");
  }
  // As IoT Hub: PUT creates; replacing an existing device needs If-Match (etag or *).
  const current = ctx.registry.getDevice(id);
  const ifMatch = ifMatchOf(req.headers["if-match"]);
  if (current && !ifMatch) throw new ApiError(409, "DeviceAlreadyExists", `device ${id} already exists`);
  // Optimistic concurrency: a stale etag loses, as on IoT Hub.
  if (current) checkIfMatch(ifMatch, current.etag, `device ${id}`);
  const d = current
    ? await ctx.registry.updateDevice({ ...body, deviceId: id })
    : await ctx.registry.createDevice({ ...body, deviceId: id });
  sendJson(res, 200, deviceJson(d, ctx.isConnected(id)));
}

export function listModules({ ctx, res, params }: Call): void {
  const id = params.get("id");
  deviceOf(ctx, id);
  sendJson(
    res,
    200,
    ctx.registry.listModules(id).map((m) => moduleJson(m, ctx.isConnected(`${id}/${m.moduleId}`))),
  );
}

export function getModule({ ctx, res, params }: Call): void {
  const [id, mid] = [params.get("id"), params.get("moduleId")];
  deviceOf(ctx, id);
  const m = ctx.registry.getModule(id, mid);
  if (!m) throw new ApiError(404, "ModuleNotFound", `module ${id}/${mid} not found`);
  sendJson(res, 200, moduleJson(m, ctx.isConnected(`${id}/${mid}`)));
}

export async function putModule({ ctx, req, res, params }: Call): Promise<void> {
  const [id, mid] = [params.get("id"), params.get("moduleId")];
  deviceOf(ctx, id);
  const body = ((await readJson(req)) ?? {}) as Record<string, unknown>;
  sendJson(res, 200, await createOrReplaceModule(ctx, id, mid, body, req.headers["if-match"]));
}

export async function deleteModule({ ctx, res, params }: Call): Promise<void> {
  const [id, mid] = [params.get("id"), params.get("moduleId")];
  deviceOf(ctx, id);
  await ctx.registry.deleteModule(id, mid);
  await ctx.forget(`${id}/${mid}`);
  res.writeHead(204).end();
}

/** Deletes a device with its modules; nothing of it may reach a device later created with the same id. */
async function removeDevice(ctx: ServiceApiContext, id: string): Promise<void> {
  const modules = ctx.registry.listModules(id).map((m) => `${id}/${m.moduleId}`);
  await ctx.registry.deleteDevice(id);
  for (const clientId of [id, ...modules]) await ctx.forget(clientId);
}
