/**
 * The module identity API authenticated by a *device's* own credential, for that device's
 * own modules: `GET /devices/{d}/modules/{m}?api-version=…` and `GET /devices/{d}/modules`,
 * answered with IoT Hub's module JSON and its keys. IoT Edge's identity service fetches the
 * `$edgeHub` module this way with the edge device's SAS token or X.509 certificate
 * (Azure/iot-identity-service `identity/aziot-hub-client-async/src/lib.rs#Client::get_module`,
 * `#Client::get_modules`); in a nested setup it asks its parent edge, which answers from its
 * scope cache, offline too. The service policy keeps the same paths (ts/service/api.ts).
 * PUT and DELETE by a device credential are not served (the policy does them).
 */
import type { Authenticator, PeerCertificate, Principal } from "../auth/authenticator.js";
import type { Registry } from "../auth/registry.js";
import { parseSasToken } from "../auth/sas.js";
import { ErrorCodes } from "../errors.js";
import { ApiError, unauthorized, unauthorizedBy } from "./http.js";
import { moduleJson } from "./shapes.js";

/**
 * True for a module identity read (`GET /devices/{d}/modules[/{m}]`) made with a device's
 * credential: a SAS token without `skn` (a policy token has one), or no Authorization and a
 * client certificate.
 */
export function isDeviceModuleRead(
  parts: string[],
  method: string,
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
): boolean {
  if (method !== "GET" || parts[0] !== "devices" || parts[2] !== "modules") return false;
  if (parts.length !== 3 && parts.length !== 4) return false;
  if (authorization === undefined) return peer !== undefined;
  try {
    return parseSasToken(authorization).keyName === undefined;
  } catch {
    // Not a token at all: the policy path refuses it as it does today.
    return false;
  }
}

/**
 * The answer to a device's read of its own modules (`parts` as {@link isDeviceModuleRead}
 * took them): one module's JSON or the list. 401 for a credential of another device (or
 * of a module), 404 for an unknown module.
 */
export function answerModuleRead(
  registry: Registry,
  authenticator: Authenticator,
  parts: string[],
  authorization: string | undefined,
  peer: PeerCertificate | undefined,
  isConnected: (clientId: string) => boolean,
): Record<string, unknown> | Record<string, unknown>[] {
  const deviceId = parts[1] as string;
  const moduleId = parts[3];
  let caller: Principal;
  try {
    caller = authorization
      ? authenticator.authenticateToken(authorization)
      : authenticator.authenticateCertificate(deviceId, peer as PeerCertificate);
  } catch (err) {
    throw unauthorizedBy(err);
  }
  // The device's own modules only, by the one table (a module's token reaches none).
  if (!authenticator.allows(caller, "module-identity", { deviceId, moduleId })) {
    const who = caller.moduleId === undefined ? caller.deviceId : `${caller.deviceId}/${caller.moduleId}`;
    throw unauthorized(`${who} may not read the modules of ${deviceId}`, ErrorCodes.AUTH_NOT_IN_SCOPE);
  }
  if (moduleId === undefined)
    return registry.listModules(deviceId).map((m) => moduleJson(m, isConnected(`${deviceId}/${m.moduleId}`)));
  const m = registry.getModule(deviceId, moduleId);
  if (!m) throw new ApiError(404, "ModuleNotFound", `module ${deviceId}/${moduleId} not found`);
  return moduleJson(m, isConnected(`${deviceId}/${moduleId}`));
}
