/**
 * Device scope sync, the call IoT Edge's hub makes on its parent:
 * `GET /devices/{edge}/modules/$edgeHub/devicesAndModulesInDeviceScope?deviceCount=&continuationToken=`.
 * Authenticated by the edge device's own SAS token (or its `$edgeHub` module's), not the
 * service policy. Answers the edge's whole subtree: the edge itself, its children, their
 * children (nested edges), and every module of those devices, with their credentials, so
 * the edge can authenticate all of them on its own while offline.
 */
import type { Authenticator, PeerCertificate } from "../auth/authenticator.js";
import type { Device, Registry } from "../auth/registry.js";
import { EdgeHubError } from "../errors.js";
import { ApiError, unauthorized } from "./http.js";
import { deviceJson, moduleJson } from "./shapes.js";

/** Devices per page when the caller gives no `deviceCount`. */
const DEFAULT_PAGE = 100;
const MAX_PAGE = 1000;

/** One page of a scope, as IoT Hub's `ScopeResult`. */
export interface ScopeResult {
  devices: Record<string, unknown>[];
  modules: Record<string, unknown>[];
  /** Path and query of the next page; null on the last. */
  continuationLink: string | null;
}

/** The devices of `edge`'s scope: itself, then every descendant, in a stable order. */
export function scopeDevices(registry: Registry, edge: Device): Device[] {
  const all = registry.listDevices();
  const out: Device[] = [edge];
  const seen = new Set([edge.deviceId]);
  for (let i = 0; i < out.length; i++) {
    const scope = (out[i] as Device).deviceScope;
    if (!(out[i] as Device).capabilities.iotEdge || !scope) continue;
    for (const d of all) {
      if (!seen.has(d.deviceId) && d.parentScopes.includes(scope)) {
        seen.add(d.deviceId);
        out.push(d);
      }
    }
  }
  return [edge, ...out.slice(1).sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))];
}

/** The path of the scope call for `edgeId`. */
export function scopePath(edgeId: string): string {
  return `/devices/${encodeURIComponent(edgeId)}/modules/$edgeHub/devicesAndModulesInDeviceScope`;
}

/** True for the path parts of the scope call. */
export function isScopeCall(parts: string[]): boolean {
  return (
    parts.length === 5 &&
    parts[0] === "devices" &&
    parts[2] === "modules" &&
    parts[3] === "$edgeHub" &&
    parts[4] === "devicesAndModulesInDeviceScope"
  );
}

/**
 * Answers one page of `edgeId`'s scope to a caller presenting `authorization` (a SAS token
 * of that edge device or of its `$edgeHub` module) or, without one, the edge device's
 * TLS client certificate.
 */
export function answerScope(
  registry: Registry,
  authenticator: Authenticator,
  edgeId: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
  query: URLSearchParams,
): ScopeResult {
  if (!authorization && !peer) throw unauthorized("no Authorization header or client certificate");
  let caller: { deviceId: string; moduleId?: string };
  try {
    caller = authorization
      ? authenticator.authenticateToken(authorization)
      : authenticator.authenticateCertificate(edgeId, peer as PeerCertificate);
  } catch (err) {
    throw unauthorized(err instanceof EdgeHubError ? `${err.code}: ${err.message}` : (err as Error).message);
  }
  // The edge device itself or its $edgeHub, by the one table.
  const edge = registry.getDevice(edgeId);
  if (!edge || !authenticator.allows(caller, "device-scope", { deviceId: edgeId })) {
    throw unauthorized(`${caller.deviceId}/${caller.moduleId ?? ""} may not read the scope of ${edgeId}`);
  }
  const count = Number(query.get("deviceCount") ?? DEFAULT_PAGE);
  if (!Number.isInteger(count) || count < 1) {
    throw new ApiError(400, "ArgumentInvalid", "deviceCount must be a positive integer");
  }
  const size = Math.min(count, MAX_PAGE);
  const devices = scopeDevices(registry, edge);
  const token = query.get("continuationToken");
  const start = token ? Number.parseInt(Buffer.from(token, "base64url").toString("utf8"), 10) : 0;
  if (!Number.isInteger(start) || start < 0) {
    throw new ApiError(400, "ArgumentInvalid", "continuationToken is not one this hub gave");
  }
  const page = devices.slice(start, start + size);
  const next = start + size < devices.length ? start + size : undefined;
  return {
    devices: page.map((d) => deviceJson(d, false)),
    modules: page.flatMap((d) => registry.listModules(d.deviceId).map((m) => moduleJson(m, false))),
    continuationLink:
      next === undefined
        ? null
        : `${scopePath(edgeId)}?deviceCount=${size}&continuationToken=${Buffer.from(String(next)).toString("base64url")}`,
  };
}
