/**
 * Device scope calls an edge makes on its parent, served by the root and by every edge
 * hub that is the parent of another (from its synced cache). Authenticated by the edge
 * device's own SAS token (or its `$edgeHub` module's, or its TLS client certificate),
 * not the service policy. Two forms, as Microsoft's edge hub calls them:
 *
 * - **nested** `POST /devices/{actor}/modules/$edgeHub/devicesAndModulesInTargetDeviceScope`
 *   with `{pageSize, continuationLink?, authChain}`: one target edge's direct scope — the
 *   target itself, its modules, its child devices, and the modules of its child devices that
 *   are not edges (a child edge's modules come with its own target scope). Microsoft's edge
 *   hub as a parent answers the target and its tree node's immediate children (its modules
 *   and child devices): `DeviceScopeController.HandleDevicesAndModulesInTargetDeviceScopeAsync`
 *   → `DeviceScopeIdentitiesCache.GetDevicesAndModulesInTargetScopeAsync` ("the target device
 *   itself and all its immediate children", `ServiceIdentityTree.GetImmediateChildren`);
 *   IoT Hub's own answer is not public. A leaf's modules are added here because no other
 *   target's scope would carry them.
 * - **legacy** `GET /devices/{edge}/modules/$edgeHub/devicesAndModulesInDeviceScope?deviceCount=&continuationToken=`:
 *   the edge's whole subtree (itself, its children, nested edges' subtrees, every module),
 *   since the legacy client reads that one sequence and nothing else
 *   (`ServiceProxy.ServiceIdentitiesIterator`).
 */
import type { Authenticator, PeerCertificate } from "../auth/authenticator.js";
import { type Device, isIdentityId, type Registry } from "../auth/registry.js";
import { ErrorCodes } from "../errors.js";
import { isJsonObject, own } from "../json.js";
import { ApiError, unauthorized, unauthorizedBy } from "./http.js";
import { deviceJson, moduleJson } from "./shapes.js";

/** Devices per page when the caller gives no `deviceCount`, or `pageSize` 0. */
const DEFAULT_PAGE = 100;
/** Most devices per page: NestedScopeRequest's batch size range is 0..1000. */
const MAX_PAGE = 1000;
/** Most ids in an auth-chain: ServiceIdentityTree's `MaxNestingDepth` edges. */
const MAX_CHAIN = 5;
/** Longest continuation token accepted back. */
const MAX_TOKEN_CHARS = 512;
/** The fields of NestedScopeRequest (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/NestedScopeRequest.cs). */
const REQUEST_FIELDS = new Set(["pageSize", "continuationLink", "authChain"]);

/** One page of a scope, as IoT Hub's `ScopeResult`. */
export interface ScopeResult {
  devices: Record<string, unknown>[];
  modules: Record<string, unknown>[];
  /** Path and query of the next page (legacy), or an opaque link (nested); null on the last. */
  continuationLink: string | null;
}

/** The devices whose parent is `edge`, in a stable order. */
function childrenOf(registry: Registry, edge: Device, all = registry.listDevices()): Device[] {
  const scope = edge.deviceScope;
  if (!edge.capabilities.iotEdge || !scope) return [];
  return all
    .filter((d) => d.deviceId !== edge.deviceId && d.parentScopes.includes(scope))
    .sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1));
}

/** The devices of `edge`'s scope: itself, then every descendant, in a stable order. */
export function scopeDevices(registry: Registry, edge: Device): Device[] {
  const all = registry.listDevices();
  const out: Device[] = [edge];
  const seen = new Set([edge.deviceId]);
  for (let i = 0; i < out.length; i++)
    for (const d of childrenOf(registry, out[i] as Device, all))
      if (!seen.has(d.deviceId)) {
        seen.add(d.deviceId);
        out.push(d);
      }
  return [edge, ...out.slice(1).sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))];
}

/** The path of an edge's call `name` on its parent: `/devices/{edge}/modules/$edgeHub/{name}`. */
export function edgeHubPath(edgeId: string, name: string): string {
  return `/devices/${encodeURIComponent(edgeId)}/modules/$edgeHub/${name}`;
}

/** The call's name when the path parts are `devices/{edge}/modules/$edgeHub/{name}`. */
export function edgeHubCallOf(parts: string[]): string | undefined {
  if (parts.length !== 5 || parts[0] !== "devices" || parts[2] !== "modules" || parts[3] !== "$edgeHub")
    return undefined;
  return parts[4];
}

/** The path of the legacy scope call for `edgeId`. */
export function scopePath(edgeId: string): string {
  return edgeHubPath(edgeId, "devicesAndModulesInDeviceScope");
}

/** The path of the nested scope call made by `actorId` (`NestedDeviceScopeApiClient.cs#GetDevicesAndModulesInTargetScopeUriFormat`). */
export function nestedScopePath(actorId: string): string {
  return edgeHubPath(actorId, "devicesAndModulesInTargetDeviceScope");
}

/**
 * The edge `edgeId` when the caller presenting `authorization` (a SAS token of that edge
 * device or of its `$edgeHub` module) or, without one, the edge device's TLS client
 * certificate is that edge; 401 otherwise.
 */
export function scopeEdge(
  registry: Registry,
  authenticator: Authenticator,
  edgeId: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
): Device {
  if (!authorization && !peer)
    throw unauthorized("no Authorization header or client certificate", ErrorCodes.AUTH_BAD_TOKEN);
  let caller: { deviceId: string; moduleId?: string };
  try {
    caller = authorization
      ? authenticator.authenticateToken(authorization)
      : authenticator.authenticateCertificate(edgeId, peer as PeerCertificate);
  } catch (err) {
    throw unauthorizedBy(err);
  }
  // The edge device itself or its $edgeHub, by the one table.
  const edge = registry.getDevice(edgeId);
  if (!edge || !authenticator.allows(caller, "device-scope", { deviceId: edgeId })) {
    throw unauthorized(
      `${caller.deviceId}/${caller.moduleId ?? ""} may not read the scope of ${edgeId}`,
      ErrorCodes.AUTH_NOT_IN_SCOPE,
    );
  }
  return edge;
}

/** A 400 with IoT Hub's `ArgumentInvalid`. */
export const invalid = (message: string) => new ApiError(400, "ArgumentInvalid", message);

/** Start of the page a token names, or 0 without one; 400 for a token this hub did not give for `bind`. */
function startOf(token: string | null | undefined, bind: string, total: number): number {
  if (!token) return 0;
  if (token.length > MAX_TOKEN_CHARS) throw invalid("continuation is not one this hub gave");
  const [start, ...rest] = Buffer.from(token, "base64url").toString("utf8").split("/");
  const n = Number(start);
  if (!/^[1-9][0-9]{0,8}$/.test(start ?? "") || n >= total || rest.join("/") !== bind)
    throw invalid("continuation is not one this hub gave");
  return n;
}

/** A continuation token: opaque to callers, naming the next page and what it continues. */
function tokenOf(next: number, bind: string): string {
  return Buffer.from(`${next}/${bind}`).toString("base64url");
}

/** Answers one page of `edgeId`'s whole scope (the legacy call). */
export function answerScope(
  registry: Registry,
  authenticator: Authenticator,
  edgeId: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
  query: URLSearchParams,
): ScopeResult {
  const edge = scopeEdge(registry, authenticator, edgeId, authorization, peer);
  const count = Number(query.get("deviceCount") ?? DEFAULT_PAGE);
  if (!Number.isInteger(count) || count < 1) throw invalid("deviceCount must be a positive integer");
  const size = Math.min(count, MAX_PAGE);
  const devices = scopeDevices(registry, edge);
  const start = startOf(query.get("continuationToken"), edgeId, devices.length);
  const page = devices.slice(start, start + size);
  const next = start + size < devices.length ? start + size : undefined;
  return {
    devices: page.map((d) => deviceJson(d, false)),
    modules: page.flatMap((d) => registry.listModules(d.deviceId).map((m) => moduleJson(m, false))),
    continuationLink:
      next === undefined
        ? null
        : `${scopePath(edgeId)}?deviceCount=${size}&continuationToken=${tokenOf(next, edgeId)}`,
  };
}

/** A nested request's body, checked: NestedScopeRequest's fields and nothing else. */
function nestedRequestOf(body: unknown): { pageSize: number; link: string | undefined; authChain: string } {
  if (!isJsonObject(body))
    throw invalid("the body is not a JSON object {pageSize, continuationLink, authChain}");
  for (const key of Object.keys(body))
    if (!REQUEST_FIELDS.has(key)) throw invalid(`unknown field ${JSON.stringify(key.slice(0, 64))}`);
  const pageSize = own(body, "pageSize");
  if (typeof pageSize !== "number" || !Number.isInteger(pageSize) || pageSize < 0 || pageSize > MAX_PAGE)
    throw invalid(`pageSize must be an integer 0..${MAX_PAGE}`);
  const authChain = own(body, "authChain");
  if (typeof authChain !== "string" || authChain.trim() === "") throw invalid("authChain is required");
  const link = own(body, "continuationLink") ?? undefined;
  if (link !== undefined && typeof link !== "string") throw invalid("continuationLink must be a string");
  return { pageSize, link, authChain };
}

/**
 * The target edge of `authChain` (`{target};…;{actor}`) when the chain is sound: at most
 * {@link MAX_CHAIN} ids, ending with the actor, each id an enabled edge device here and a
 * child of the next (its `parentScopes` holds the next one's `deviceScope`). Microsoft's
 * parent checks the chain it computes to the target contains the actor
 * (`AuthChainHelpers.ValidateAuthChain`); this checks the caller's chain is that same chain.
 */
export function targetOf(registry: Registry, authChain: string, actorId: string): Device {
  const ids = authChain.split(";");
  if (new Set(ids).size !== ids.length) throw invalid("authChain names an edge twice");
  if (ids.length > MAX_CHAIN) throw invalid(`authChain has more than ${MAX_CHAIN} edges`);
  if (ids.at(-1) !== actorId) throw invalid("authChain does not end with the caller");
  const edges: Device[] = [];
  for (const id of ids) {
    const d = isIdentityId(id) ? registry.getDevice(id) : undefined;
    if (!d?.capabilities.iotEdge || d.status !== "enabled")
      throw invalid("authChain names an id that is not an enabled edge device in the caller's scope");
    edges.push(d);
  }
  for (let i = 0; i + 1 < edges.length; i++) {
    const scope = (edges[i + 1] as Device).deviceScope;
    if (!scope || !(edges[i] as Device).parentScopes.includes(scope))
      throw invalid("authChain names an edge that is not a child of the next one");
  }
  return edges[0] as Device;
}

/**
 * Answers one page of the target edge's direct scope (the nested call) to the actor
 * `actorId`; the body is read only once the caller is known to be that actor.
 */
export async function answerTargetScope(
  registry: Registry,
  authenticator: Authenticator,
  actorId: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
  body: () => Promise<unknown>,
): Promise<ScopeResult> {
  scopeEdge(registry, authenticator, actorId, authorization, peer);
  const request = nestedRequestOf(await body());
  const target = targetOf(registry, request.authChain, actorId);
  const devices = [target, ...childrenOf(registry, target)];
  const size = request.pageSize === 0 ? DEFAULT_PAGE : request.pageSize;
  const start = startOf(request.link, target.deviceId, devices.length);
  const page = devices.slice(start, start + size);
  const next = start + size < devices.length ? start + size : undefined;
  return {
    devices: page.map((d) => deviceJson(d, false)),
    // A child edge's modules are in its own target scope.
    modules: page
      .filter((d) => d === target || !d.capabilities.iotEdge)
      .flatMap((d) => registry.listModules(d.deviceId).map((m) => moduleJson(m, false))),
    continuationLink: next === undefined ? null : tokenOf(next, target.deviceId),
  };
}
