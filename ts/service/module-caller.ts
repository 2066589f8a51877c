/**
 * Direct methods invoked by a module through its hub (what the SDK's
 * `ModuleClient.invokeMethod` sends: `POST /twins/{d}[/modules/{m}]/methods` with the
 * module's own SAS token and `x-ms-edge-moduleId: {device}/{module}`). Only a module of an
 * edge device may call, and only that edge device, its modules, its children and their
 * modules (ts/auth/authorization.ts); this works with the parent away, since the hub
 * answers from its own registry and connections.
 */
import type { IncomingMessage } from "node:http";
import type { Authenticator } from "../auth/authenticator.js";
import { ErrorCodes } from "../errors.js";
import { ApiError, unauthorized, unauthorizedBy } from "./http.js";

/** True for the path parts of a method call. */
function isMethodCall(parts: string[], method: string): boolean {
  return (
    method === "POST" &&
    parts[0] === "twins" &&
    ((parts.length === 3 && parts[2] === "methods") ||
      (parts.length === 5 && parts[2] === "modules" && parts[4] === "methods"))
  );
}

/**
 * Checks a request made by a module; throws 401/403 unless it is a method call the module
 * may make. Returns the caller, `{device}/{module}`.
 */
export function authorizeModuleCall(
  req: IncomingMessage,
  parts: string[],
  authenticator: Authenticator,
): string {
  const header = req.headers["x-ms-edge-moduleid"];
  const caller = Array.isArray(header) ? header[0] : header;
  if (!isMethodCall(parts, req.method ?? "GET"))
    throw unauthorized("a module may only invoke direct methods here", ErrorCodes.AUTH_NOT_IN_SCOPE);
  let principal: { deviceId: string; moduleId?: string };
  try {
    principal = authenticator.authenticateToken(req.headers.authorization ?? "");
  } catch (err) {
    throw unauthorizedBy(err);
  }
  if (principal.moduleId === undefined || `${principal.deviceId}/${principal.moduleId}` !== caller) {
    throw unauthorized(
      "the token is not the module's named in x-ms-edge-moduleId",
      ErrorCodes.AUTH_WRONG_AUDIENCE,
    );
  }
  // Who may call whom is the one table's: an edge's modules reach that edge and its children.
  const target = { deviceId: parts[1] ?? "", moduleId: parts.length === 5 ? parts[3] : undefined };
  if (authenticator.allows(principal, "method", target)) return caller;
  throw new ApiError(
    403,
    "Forbidden",
    `${caller} may not invoke methods on ${target.deviceId}`,
    undefined,
    ErrorCodes.AUTH_NOT_IN_SCOPE,
  );
}
