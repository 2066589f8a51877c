/**
 * Authenticates MQTT clients the way IoT Hub does: client id `deviceId[/moduleId]`,
 * username `{hostname}/{clientId}/?api-version=…`, and a SAS token as password signed
 * with the identity's primary or secondary key for `{hostname}/devices/{id}[/modules/{m}]`.
 * Unknown identities are refused at once; nothing here waits on a parent.
 */
import { EdgeHubError, type ErrorCode, ErrorCodes } from "../errors.js";
import type { Registry } from "./registry.js";
import { parseSasToken, signedByAny } from "./sas.js";

/** Who a connection is. */
export interface Principal {
  deviceId: string;
  moduleId?: string;
  /** The client id as it connected (`deviceId` or `deviceId/moduleId`). */
  clientId: string;
}

/** What a client presented at CONNECT. */
export interface Credentials {
  clientId: string;
  username?: string | undefined;
  password?: Buffer | undefined;
}

function deny(code: ErrorCode, message: string): EdgeHubError {
  return new EdgeHubError(code, message);
}

/** Splits an IoT Hub client id into device and module. */
export function parseClientId(clientId: string): { deviceId: string; moduleId?: string } | undefined {
  const parts = clientId.split("/");
  if (parts.length > 2 || parts.some((p) => p.length === 0)) return undefined;
  const [deviceId, moduleId] = parts as [string, string | undefined];
  return moduleId === undefined ? { deviceId } : { deviceId, moduleId };
}

/** Checks credentials against the registry. */
export class Authenticator {
  readonly #registry: Registry;
  readonly #hostnames: string[];
  readonly #now: () => number;

  /**
   * @param hostnames the hub names tokens and usernames may carry: this hub's hostname and,
   *   on an edge hub, its parent's hub name.
   * @param now clock in ms (injected for tests).
   */
  constructor(registry: Registry, hostnames: string[], now: () => number = Date.now) {
    this.#registry = registry;
    this.#hostnames = hostnames.map((h) => h.toLowerCase());
    this.#now = now;
  }

  /** The principal for these credentials, or an `AUTH_*` error saying why not. */
  authenticate(c: Credentials): Principal {
    const ids = parseClientId(c.clientId);
    if (!ids)
      throw deny(
        ErrorCodes.AUTH_UNKNOWN_IDENTITY,
        `client id ${JSON.stringify(c.clientId)} is not deviceId[/moduleId]`,
      );
    const host = this.#hostFromUsername(c.username, c.clientId);
    if (host === undefined) {
      throw deny(
        ErrorCodes.AUTH_BAD_TOKEN,
        `username must be {hostname}/${c.clientId}/?api-version=… for this hub`,
      );
    }
    const device = this.#registry.getDevice(ids.deviceId);
    if (!device) throw deny(ErrorCodes.AUTH_UNKNOWN_IDENTITY, `device ${ids.deviceId} is not registered`);
    if (device.status !== "enabled")
      throw deny(ErrorCodes.AUTH_IDENTITY_DISABLED, `device ${ids.deviceId} is disabled`);
    const module =
      ids.moduleId === undefined ? undefined : this.#registry.getModule(ids.deviceId, ids.moduleId);
    if (ids.moduleId !== undefined && !module) {
      throw deny(ErrorCodes.AUTH_UNKNOWN_IDENTITY, `module ${c.clientId} is not registered`);
    }
    const auth = (module ?? device).authentication;
    if (auth.type !== "sas" || !auth.symmetricKey) {
      throw deny(ErrorCodes.AUTH_BAD_SIGNATURE, `${c.clientId} does not authenticate with SAS keys`);
    }
    if (!c.password || c.password.length === 0)
      throw deny(ErrorCodes.AUTH_BAD_TOKEN, "no SAS token in the password");
    const token = parseSasToken(c.password.toString("utf8"));
    if (token.expiry * 1000 <= this.#now())
      throw deny(ErrorCodes.AUTH_TOKEN_EXPIRED, `token of ${c.clientId} has expired`);
    const path =
      ids.moduleId === undefined
        ? `/devices/${ids.deviceId}`
        : `/devices/${ids.deviceId}/modules/${ids.moduleId}`;
    const slash = token.resource.indexOf("/");
    const audienceHost = slash < 0 ? "" : token.resource.slice(0, slash).toLowerCase();
    if (!this.#hostnames.includes(audienceHost) || token.resource.slice(slash) !== path) {
      throw deny(ErrorCodes.AUTH_WRONG_AUDIENCE, `token is for ${token.resource}, not ${host}${path}`);
    }
    if (!signedByAny(token, [auth.symmetricKey.primaryKey, auth.symmetricKey.secondaryKey])) {
      throw deny(ErrorCodes.AUTH_BAD_SIGNATURE, `token of ${c.clientId} is not signed by its keys`);
    }
    return { ...ids, clientId: c.clientId };
  }

  #hostFromUsername(username: string | undefined, clientId: string): string | undefined {
    if (!username) return undefined;
    const end = `/${clientId}/`;
    const at = username.indexOf(end);
    if (at <= 0) return undefined;
    const host = username.slice(0, at).toLowerCase();
    const rest = username.slice(at + end.length);
    if (rest !== "" && !rest.startsWith("?")) return undefined;
    return this.#hostnames.includes(host) ? host : undefined;
  }
}
