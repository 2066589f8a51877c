/**
 * One identity of an edge's scope, asked for by that edge when a login arrives that its
 * cache cannot place, served by the root and by every edge hub that is a parent (from its
 * cache). Authenticated as the scope calls are (ts/service/scope.ts: the path's actor edge,
 * by its `$edgeHub` token). Two forms, as Microsoft's edge hub sends them:
 *
 * - **nested** `POST /devices/{actor}/modules/$edgeHub/getDeviceAndModuleOnBehalfOf?api-version=2020-06-30-preview`
 *   with an origin-edge header and `{targetDeviceId, targetModuleId?, authChain}`
 *   (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/NestedDeviceScopeApiClient.cs#GetIdentityOnBehalfOf;
 *   the body is Hub.Core's `IdentityOnBehalfOfRequest`). The chain is the *origin* edge's
 *   (`ServiceIdentityTree.GetEdgeAuthChain("{origin}/$edgeHub")`: `{origin};…;{actor}`), the
 *   origin being the edge the login arrived at (the actor itself, or a child edge whose call
 *   the actor forwards). The answer holds the target if the origin's chain to it passes
 *   through the origin, and for a module its device too, else nothing
 *   (Hub.Http `DeviceScopeController.cs#HandleGetDeviceAndModuleOnBehalfOfAsync`).
 * - **legacy** `GET /devices/{edge}/modules/$edgeHub/deviceAndModuleInDeviceScope?targetDeviceId=&targetModuleId=&api-version=2018-08-30-preview`
 *   (`DeviceScopeApiClient.cs#InScopeTargetIdentityUriFormat`): the target if it is in the
 *   edge's whole subtree, as the legacy scope call answers that subtree.
 */
import type { IncomingMessage } from "node:http";
import type { Authenticator, PeerCertificate } from "../auth/authenticator.js";
import { isBelow } from "../auth/authorization.js";
import { type Device, isIdentityId, type Registry } from "../auth/registry.js";
import { isJsonObject, own } from "../json.js";
import { readJson } from "./http.js";
import { edgeHubCallOf, edgeHubPath, invalid, type ScopeResult, scopeEdge, targetOf } from "./scope.js";
import { deviceJson, moduleJson } from "./shapes.js";

/** The fields of `IdentityOnBehalfOfRequest` (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Core/IdentityOnBehalfOfRequest.cs). */
const REQUEST_FIELDS = new Set(["targetDeviceId", "targetModuleId", "authChain"]);
/**
 * The origin edge's header. Its name is `Constants.OriginEdgeHeaderKey` in Microsoft's edge
 * hub, whose value was not in the sources read (docs/upstream-forms.md §10); Microsoft's
 * parent takes the origin from the chain, so this one does too and only checks the header
 * agrees when present.
 */
export const ORIGIN_EDGE_HEADER = "x-ms-edge-origin-edge";

/** Which single-identity call the path parts are, if any. */
export function identityCallOf(parts: string[]): "on-behalf-of" | "legacy-one" | undefined {
  const name = edgeHubCallOf(parts);
  if (name === "getDeviceAndModuleOnBehalfOf") return "on-behalf-of";
  if (name === "deviceAndModuleInDeviceScope") return "legacy-one";
  return undefined;
}

/** The path of the nested call made by `actorId` (`NestedDeviceScopeApiClient.cs#GetDeviceAndModuleOnBehalfOfUriFormat`). */
export function onBehalfOfPath(actorId: string): string {
  return edgeHubPath(actorId, "getDeviceAndModuleOnBehalfOf");
}

/** The path of the legacy call made by `edgeId` (`DeviceScopeApiClient.cs#InScopeTargetIdentityUriFormat`). */
export function inScopeTargetPath(edgeId: string): string {
  return edgeHubPath(edgeId, "deviceAndModuleInDeviceScope");
}

/** A target's ids, checked: a device id, and a module id or none (absent, null or ""). */
function targetIds(deviceId: unknown, moduleId: unknown): { deviceId: string; moduleId: string | undefined } {
  if (!isIdentityId(deviceId)) throw invalid("targetDeviceId is not a device id");
  if (moduleId === undefined || moduleId === null || moduleId === "")
    return { deviceId, moduleId: undefined };
  if (!isIdentityId(moduleId)) throw invalid("targetModuleId is not a module id");
  return { deviceId, moduleId };
}

/** The target (and for a module, its device) when `inScope(its device)`; nothing otherwise. */
function resultOf(
  registry: Registry,
  target: { deviceId: string; moduleId: string | undefined },
  inScope: (d: Device) => boolean,
): ScopeResult {
  const none: ScopeResult = { devices: [], modules: [], continuationLink: null };
  const device = registry.getDevice(target.deviceId);
  if (!device || !inScope(device)) return none;
  if (target.moduleId === undefined)
    return { devices: [deviceJson(device, false)], modules: [], continuationLink: null };
  const m = registry.getModule(target.deviceId, target.moduleId);
  if (!m) return none;
  // "If the target is a module, we also need to include the parent device" (DeviceScopeController).
  return { devices: [deviceJson(device, false)], modules: [moduleJson(m, false)], continuationLink: null };
}

/**
 * On an edge hub: asks its own parent for an identity (ts/upstream/scope-identity.ts), on
 * behalf of the chain `{origin};…;{child}` that asked here; true when the cache has it now.
 */
export type IdentityRefresh = (
  deviceId: string,
  moduleId: string | undefined,
  chain: string[],
) => Promise<boolean>;

/**
 * The answer from the cache; on an edge hub whose cache lacks the target, after asking its
 * own parent once (Microsoft's parent refreshes on behalf of first, always:
 * `DeviceScopeController#HandleGetDeviceAndModuleOnBehalfOfAsync`; here only when the cache
 * cannot answer, so an answer while the parent is away is as fast as the cache).
 */
async function refreshed(
  registry: Registry,
  target: { deviceId: string; moduleId: string | undefined },
  inScope: (d: Device) => boolean,
  ask: (() => Promise<boolean>) | undefined,
): Promise<ScopeResult> {
  const cached = resultOf(registry, target, inScope);
  if (cached.devices.length > 0 || !ask || !(await ask())) return cached;
  return resultOf(registry, target, inScope);
}

/** Devices that are `edge` or below it. */
const underEdge = (registry: Registry, edgeId: string) => (d: Device) =>
  d.deviceId === edgeId || isBelow(registry, d.deviceId, edgeId);

/**
 * Answers the nested call of `actorId`: 401 unless the caller is the actor's `$edgeHub`
 * (or device, or certificate, as for the scope calls); 400 for a body other than
 * IdentityOnBehalfOfRequest's fields, a chain that is not a sound chain of enabled edges
 * ending at the actor, or an origin header that is not the chain's first edge.
 */
export async function answerOnBehalfOf(
  registry: Registry,
  authenticator: Authenticator,
  actorId: string,
  req: IncomingMessage,
  peer: PeerCertificate | undefined,
  body: () => Promise<unknown>,
  refresh?: IdentityRefresh,
): Promise<ScopeResult> {
  scopeEdge(registry, authenticator, actorId, req.headers.authorization, peer);
  const request = await body();
  if (!isJsonObject(request))
    throw invalid("the body is not a JSON object {targetDeviceId, targetModuleId, authChain}");
  for (const key of Object.keys(request))
    if (!REQUEST_FIELDS.has(key)) throw invalid(`unknown field ${JSON.stringify(key.slice(0, 64))}`);
  const authChain = own(request, "authChain");
  if (typeof authChain !== "string" || authChain.trim() === "") throw invalid("authChain is required");
  const origin = targetOf(registry, authChain, actorId);
  const header = req.headers[ORIGIN_EDGE_HEADER];
  if (header !== undefined && header !== origin.deviceId)
    throw invalid(`${ORIGIN_EDGE_HEADER} is not the first edge of authChain`);
  const target = targetIds(own(request, "targetDeviceId"), own(request, "targetModuleId"));
  // AuthChainHelpers.ValidateAuthChain(origin, target, chain to target): the origin is on it.
  const ask = refresh && (() => refresh(target.deviceId, target.moduleId, authChain.split(";")));
  return refreshed(registry, target, underEdge(registry, origin.deviceId), ask);
}

/** Answers the legacy call of `edgeId`: the target if it is in the edge's subtree. */
export function answerInScopeTarget(
  registry: Registry,
  authenticator: Authenticator,
  edgeId: string,
  req: IncomingMessage,
  peer: PeerCertificate | undefined,
  query: URLSearchParams,
  refresh?: IdentityRefresh,
): Promise<ScopeResult> {
  scopeEdge(registry, authenticator, edgeId, req.headers.authorization, peer);
  const target = targetIds(
    query.get("targetDeviceId") ?? undefined,
    query.get("targetModuleId") ?? undefined,
  );
  const ask = refresh && (() => refresh(target.deviceId, target.moduleId, [edgeId]));
  return refreshed(registry, target, underEdge(registry, edgeId), ask);
}

/** A body of IdentityOnBehalfOfRequest's three short fields. */
const REQUEST_MAX = 16 * 1024;

/**
 * The answer to a single-identity call (`parts`, the request's decoded path), or undefined
 * when the request is not one (another path or method). `refresh` on an edge hub.
 */
export async function answerIdentityCall(
  registry: Registry,
  authenticator: Authenticator,
  parts: string[],
  req: IncomingMessage,
  peer: PeerCertificate | undefined,
  query: URLSearchParams,
  refresh?: IdentityRefresh,
): Promise<ScopeResult | undefined> {
  const call = identityCallOf(parts);
  const edgeId = parts[1] as string;
  const body = () => readJson(req, REQUEST_MAX);
  if (call === "on-behalf-of" && req.method === "POST")
    return answerOnBehalfOf(registry, authenticator, edgeId, req, peer, body, refresh);
  if (call === "legacy-one" && req.method === "GET")
    return answerInScopeTarget(registry, authenticator, edgeId, req, peer, query, refresh);
  return undefined;
}
