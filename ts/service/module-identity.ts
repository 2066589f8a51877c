/**
 * The module identity API authenticated by a *device's* own credential, for that device's
 * own modules, as IoT Edge's identity service calls it (Azure/iot-identity-service
 * `identity/aziot-hub-client-async/src/lib.rs`): `GET /devices/{d}/modules/{m}` (`#get_module`,
 * how it fetches `$edgeHub`), `GET /devices/{d}/modules` (`#get_modules`), `PUT` one
 * (`#create_module`; `#update_module` adds `If-Match: *`) and `DELETE` one (`#delete_module`,
 * `If-Match: *`, 204), with the edge device's SAS token or X.509 certificate. The modules IoT
 * Hub manages (`$edgeAgent`, `$edgeHub`) are never written this way: 403.
 *
 * On the root the registry answers. On an edge hub reads answer from the scope cache
 * (offline too), and writes — from a child edge's identity service, whose local gateway is
 * this hub — are checked here against the cache, then forwarded to the parent signed with
 * this hub's `$edgeHub` token on the child's behalf ({@link ModuleWrites}); the parent
 * accepts that token for modules of devices below this edge (`descendant-modules` in
 * ts/auth/authorization.ts). The service policy keeps the same paths (ts/service/api.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Authenticator, PeerCertificate, Principal } from "../auth/authenticator.js";
import type { Module, Registry } from "../auth/registry.js";
import { parseSasToken } from "../auth/sas.js";
import { ErrorCodes } from "../errors.js";
import { isJsonObject, own, record } from "../json.js";
import { checkIfMatch, ifMatchOf } from "./etag.js";
import { ApiError, readJson, sendJson, unauthorized, unauthorizedBy } from "./http.js";
import { moduleJson } from "./shapes.js";

/** A module write body: IS `hub::Module`'s five fields (and an etag), a few hundred bytes. */
const BODY_MAX = 16 * 1024;
/** The fields `aziot_identity_common::hub::Module` serializes, and the etag IoT Hub's shape has. */
const BODY_FIELDS = new Set(["moduleId", "deviceId", "managedBy", "generationId", "authentication", "etag"]);
/** Longest `managedBy` kept (IoT Hub's values are short: `iotEdge`). */
const MAX_MANAGED_BY = 128;

/** A write a device made for one of its modules, as forwarded to the parent. */
export interface ModuleWrite {
  method: "PUT" | "DELETE";
  deviceId: string;
  moduleId: string;
  /** The checked PUT body. */
  body?: Record<string, unknown>;
  /** `If-Match` as the caller sent it (bare), if any. */
  ifMatch?: string;
}

/** Forwards module writes to the parent (an edge hub's); answers what the parent answered. */
export interface ModuleWrites {
  /** The parent's answer: a module's JSON for a PUT, undefined for a DELETE; an {@link ApiError} when refused or unreachable (503). */
  write(w: ModuleWrite): Promise<unknown>;
}

/** What the module identity API works on (a part of the service API's context). */
export interface ModuleApiContext {
  registry: Registry;
  authenticator: Authenticator;
  isConnected(clientId: string): boolean;
  /** Drops the twin, session and queued deliveries of a deleted identity. */
  forget(clientId: string): Promise<void>;
  /** On an edge hub: writes go to the parent. */
  moduleWrites?: ModuleWrites | undefined;
  /** A request on `req`'s socket passed authentication. */
  authenticated?(req: IncomingMessage): void;
}

/**
 * True for a module identity call (`GET /devices/{d}/modules[/{m}]`, `PUT` or `DELETE`
 * `/devices/{d}/modules/{m}`) made with a device's credential: a SAS token without `skn`
 * (a policy token has one), or no Authorization and a client certificate.
 */
export function isDeviceModuleCall(
  parts: string[],
  method: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
): boolean {
  if (parts[0] !== "devices" || parts[2] !== "modules") return false;
  const shape =
    (method === "GET" && (parts.length === 3 || parts.length === 4)) ||
    ((method === "PUT" || method === "DELETE") && parts.length === 4);
  if (!shape) return false;
  if (authorization === undefined) return peer !== undefined;
  try {
    return parseSasToken(authorization).keyName === undefined;
  } catch {
    // Not a token at all: the policy path refuses it as it does today.
    return false;
  }
}

/**
 * Creates or replaces module `deviceId/moduleId` from `spec` as IoT Hub does: PUT creates;
 * replacing an existing module needs `If-Match` (its etag or `*`), else 409; a stale etag 412.
 * Shared by the service policy's path and a device's own.
 */
export async function putModule(
  ctx: Pick<ModuleApiContext, "registry" | "isConnected">,
  deviceId: string,
  moduleId: string,
  spec: Record<string, unknown>,
  ifMatchHeader: string | string[] | undefined,
): Promise<Record<string, unknown>> {
  const current = ctx.registry.getModule(deviceId, moduleId);
  const ifMatch = ifMatchOf(ifMatchHeader);
  if (current && !ifMatch)
    throw new ApiError(409, "ModuleAlreadyExistsOnDevice", `module ${deviceId}/${moduleId} already exists`);
  if (current) checkIfMatch(ifMatch, current.etag, `module ${deviceId}/${moduleId}`);
  const full = { ...spec, deviceId, moduleId } as Partial<Module> & { deviceId: string; moduleId: string };
  const m = current ? await ctx.registry.updateModule(full) : await ctx.registry.createModule(full);
  return moduleJson(m, ctx.isConnected(`${deviceId}/${moduleId}`));
}

/** Who presented the credential: 401 when it is nobody's here. */
function callerOf(
  authenticator: Authenticator,
  deviceId: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
): Principal {
  try {
    return authorization
      ? authenticator.authenticateToken(authorization)
      : authenticator.authenticateCertificate(deviceId, peer as PeerCertificate);
  } catch (err) {
    throw unauthorizedBy(err);
  }
}

const invalid = (message: string) => new ApiError(400, "ArgumentInvalid", message);

/** A device's PUT body, checked: IS `hub::Module`'s fields, ids as the path has them. */
function writeBodyOf(body: unknown, deviceId: string, moduleId: string): Record<string, unknown> {
  if (body !== undefined && !isJsonObject(body)) throw invalid("the body is not a module JSON object");
  for (const key of Object.keys(body ?? {}))
    if (!BODY_FIELDS.has(key)) throw invalid(`unknown field ${JSON.stringify(key.slice(0, 64))}`);
  for (const [key, want] of [
    ["deviceId", deviceId],
    ["moduleId", moduleId],
  ] as const) {
    const v = own(body, key);
    if (v !== undefined && v !== null && v !== want)
      throw invalid(`${key} in the body differs from the path`);
  }
  const managedBy = own(body, "managedBy");
  if (
    managedBy !== undefined &&
    managedBy !== null &&
    (typeof managedBy !== "string" || managedBy.length > MAX_MANAGED_BY)
  )
    throw invalid(`managedBy is not a string of at most ${MAX_MANAGED_BY} characters`);
  const authentication = own(body, "authentication");
  if (authentication !== undefined && authentication !== null && !isJsonObject(authentication))
    throw invalid("authentication is not an object");
  // What goes on (to the registry, or to the parent): hub::Module's fields as the path names them.
  const out = record();
  out.moduleId = moduleId;
  out.deviceId = deviceId;
  if (typeof managedBy === "string") out.managedBy = managedBy;
  if (isJsonObject(authentication)) out.authentication = authentication;
  return out;
}

/**
 * Answers a device's module identity call (`parts` as {@link isDeviceModuleCall} took
 * them): 401 for a credential that may not touch the device's modules (another device's,
 * a module's), 403 for a write to a `$` module, 404 for an unknown one, 503 on an edge hub
 * whose parent is away (writes only).
 */
export async function answerModuleCall(
  ctx: ModuleApiContext,
  req: IncomingMessage,
  res: ServerResponse,
  parts: string[],
  peer: PeerCertificate | undefined,
): Promise<void> {
  const deviceId = parts[1] as string;
  const moduleId = parts[3];
  const method = req.method ?? "GET";
  const caller = callerOf(ctx.authenticator, deviceId, req.headers.authorization, peer);
  // The device's own modules, or (forwarded) a descendant's, by the one table.
  if (!ctx.authenticator.allows(caller, "module-identity", { deviceId, moduleId })) {
    const who = caller.moduleId === undefined ? caller.deviceId : `${caller.deviceId}/${caller.moduleId}`;
    throw unauthorized(`${who} may not touch the modules of ${deviceId}`, ErrorCodes.AUTH_NOT_IN_SCOPE);
  }
  ctx.authenticated?.(req);
  if (moduleId === undefined)
    return sendJson(
      res,
      200,
      ctx.registry
        .listModules(deviceId)
        .map((m) => moduleJson(m, ctx.isConnected(`${deviceId}/${m.moduleId}`))),
    );
  if (method === "GET") {
    const m = ctx.registry.getModule(deviceId, moduleId);
    if (!m) throw new ApiError(404, "ModuleNotFound", `module ${deviceId}/${moduleId} not found`);
    return sendJson(res, 200, moduleJson(m, ctx.isConnected(`${deviceId}/${moduleId}`)));
  }
  if (moduleId.startsWith("$"))
    throw new ApiError(
      403,
      "Forbidden",
      `module ${moduleId} is managed by the hub, not by ${deviceId}`,
      undefined,
      ErrorCodes.AUTH_NOT_IN_SCOPE,
    );
  const ifMatch = ifMatchOf(req.headers["if-match"]);
  const body = method === "PUT" ? writeBodyOf(await readJson(req, BODY_MAX), deviceId, moduleId) : undefined;
  if (ctx.moduleWrites) {
    const answer = await ctx.moduleWrites.write({
      method: method as "PUT" | "DELETE",
      deviceId,
      moduleId,
      ...(body === undefined ? {} : { body }),
      ...(ifMatch === undefined ? {} : { ifMatch }),
    });
    if (method === "PUT") return sendJson(res, 200, answer);
    res.writeHead(204).end();
    return;
  }
  if (method === "PUT")
    return sendJson(res, 200, await putModule(ctx, deviceId, moduleId, body ?? {}, ifMatch));
  const current = ctx.registry.getModule(deviceId, moduleId);
  if (!current) throw new ApiError(404, "ModuleNotFound", `module ${deviceId}/${moduleId} not found`);
  checkIfMatch(ifMatch, current.etag, `module ${deviceId}/${moduleId}`);
  await ctx.registry.deleteModule(deviceId, moduleId);
  await ctx.forget(`${deviceId}/${moduleId}`);
  res.writeHead(204).end();
}
