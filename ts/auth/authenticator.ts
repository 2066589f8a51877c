/**
 * Authenticates MQTT clients the way IoT Hub does: client id `deviceId[/moduleId]`,
 * username `{hostname}/{clientId}/?api-version=…`, and a SAS token as password signed
 * with the identity's primary or secondary key for `{hostname}/devices/{id}[/modules/{m}]`.
 * Unknown identities are refused at once; nothing here waits on a parent.
 */
import { createHash } from "node:crypto";
import { EdgeHubError, type ErrorCode, ErrorCodes } from "../errors.js";
import type { Authentication, Registry } from "./registry.js";
import { parseSasToken, signedByAny } from "./sas.js";

/** Who a connection is. */
export interface Principal {
  deviceId: string;
  moduleId?: string;
  /** The client id as it connected (`deviceId` or `deviceId/moduleId`). */
  clientId: string;
  /** When its SAS token expires (ms since the epoch); the connection ends then. */
  expiresAt?: number;
}

/** The TLS client certificate of a connection, as the listener verified it. */
export interface PeerCertificate {
  /** DER bytes of the leaf certificate. */
  der: Buffer;
  /** Common name of the subject. */
  commonName: string;
  /** True when the chain verified against the hub's trusted device CAs. */
  chainTrusted: boolean;
}

/** What a client presented at CONNECT. */
export interface Credentials {
  clientId: string;
  username?: string | undefined;
  password?: Buffer | undefined;
  peer?: PeerCertificate | undefined;
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
    if ((!c.password || c.password.length === 0) && c.peer) {
      this.#checkCertificate(c.clientId, ids.deviceId, auth, c.peer);
      return { ...ids, clientId: c.clientId };
    }
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
    return { ...ids, clientId: c.clientId, expiresAt: token.expiry * 1000 };
  }

  #checkCertificate(clientId: string, deviceId: string, auth: Authentication, peer: PeerCertificate): void {
    if (auth.type === "selfSigned") {
      const prints = [
        auth.x509Thumbprint?.primaryThumbprint,
        auth.x509Thumbprint?.secondaryThumbprint,
      ].filter(Boolean);
      const sha1 = createHash("sha1").update(peer.der).digest("hex").toUpperCase();
      const sha256 = createHash("sha256").update(peer.der).digest("hex").toUpperCase();
      if (prints.includes(sha1) || prints.includes(sha256)) return;
      throw deny(
        ErrorCodes.AUTH_BAD_CERTIFICATE,
        `certificate of ${clientId} does not match its registered thumbprints`,
      );
    }
    if (auth.type === "certificateAuthority") {
      if (peer.chainTrusted && peer.commonName === deviceId) return;
      throw deny(
        ErrorCodes.AUTH_BAD_CERTIFICATE,
        `certificate of ${clientId} does not chain to a trusted CA with CN=${deviceId}`,
      );
    }
    throw deny(ErrorCodes.AUTH_BAD_CERTIFICATE, `${clientId} does not authenticate with X.509`);
  }

  #hostFromUsername(username: string | undefined, clientId: string): string | undefined {
    if (!username) return undefined;
    const end = `/${clientId}/`;
    const at = username.indexOf(end);
    if (at <= 0) return undefined;
    // An SDK given `HostName=host:port` (X.509 clients ignore GatewayHostName) puts the port
    // in the username too.
    const host = username
      .slice(0, at)
      .toLowerCase()
      .replace(/:\d{1,5}$/, "");
    const rest = username.slice(at + end.length);
    if (rest !== "" && !rest.startsWith("?")) return undefined;
    return this.#hostnames.includes(host) ? host : undefined;
  }
}
