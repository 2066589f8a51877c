/**
 * Direct methods invoked by a module through its hub (what the SDK's
 * `ModuleClient.invokeMethod` sends: `POST /twins/{d}[/modules/{m}]/methods` with the
 * module's own SAS token and `x-ms-edge-moduleId: {device}/{module}`). A module may call
 * the modules of its own device and that device's children; this works with the parent
 * away, since the hub answers from its own registry and connections.
 */
import type { IncomingMessage } from "node:http";
import type { Authenticator } from "../auth/authenticator.js";
import type { Registry } from "../auth/registry.js";
import { EdgeHubError } from "../errors.js";
import { ApiError } from "./http.js";

/** True for the path parts of a method call. */
function isMethodCall(parts: string[], method: string): boolean {
  return (
    method === "POST" &&
    parts[0] === "twins" &&
    ((parts.length === 3 && parts[2] === "methods") ||
      (parts.length === 5 && parts[2] === "modules" && parts[4] === "methods"))
  );
}

/** Checks a request made by a module; throws 401/403 unless it is a method call the module may make. */
export function authorizeModuleCall(
  req: IncomingMessage,
  parts: string[],
  authenticator: Authenticator,
  registry: Registry,
): void {
  const header = req.headers["x-ms-edge-moduleid"];
  const caller = Array.isArray(header) ? header[0] : header;
  if (!isMethodCall(parts, req.method ?? "GET")) {
    throw new ApiError(401, "IotHubUnauthorizedAccess", "a module may only invoke direct methods here");
  }
  let principal: { deviceId: string; moduleId?: string };
  try {
    principal = authenticator.authenticateToken(req.headers.authorization ?? "");
  } catch (err) {
    const reason = err instanceof EdgeHubError ? `${err.code}: ${err.message}` : (err as Error).message;
    throw new ApiError(401, "IotHubUnauthorizedAccess", reason);
  }
  if (principal.moduleId === undefined || `${principal.deviceId}/${principal.moduleId}` !== caller) {
    throw new ApiError(
      401,
      "IotHubUnauthorizedAccess",
      "the token is not the module's named in x-ms-edge-moduleId",
    );
  }
  const [, targetDevice] = parts;
  if (targetDevice === principal.deviceId) return;
  const own = registry.getDevice(principal.deviceId);
  const target = registry.getDevice(targetDevice ?? "");
  if (own?.deviceScope && target?.parentScopes.includes(own.deviceScope)) return;
  throw new ApiError(403, "Forbidden", `${caller} may call only its own device's modules and children`);
}
