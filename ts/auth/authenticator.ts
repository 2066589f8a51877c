/**
 * Authenticates MQTT clients the way IoT Hub does: client id `deviceId[/moduleId]`,
 * username `{hostname}/{clientId}/?api-version=…`, and a SAS token as password signed
 * with the identity's primary or secondary key for `{hostname}/devices/{id}[/modules/{m}]`.
 * Unknown identities are refused at once; nothing here waits on a parent.
 *
 * On behalf of: an edge hub opens its children's links to its parent with its own
 * credential and names the child in `auth-chain` (username parameter), `;`-separated: the
 * client itself, then the device ids from its device up to the edge device that acts
 * (`childDev;edge2;edge1`, `edge1/mod1;edge1`). As toward IoT Hub, that credential is the
 * acting edge's `$edgeHub` module token (Azure/iotedge `CloudConnectionProvider.cs#ConnectInternal`,
 * `ModuleTokenProvider.cs#GetTokenAsync`): the edge device's own key or certificate is refused there.
 */
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { EdgeHubError, type ErrorCode, ErrorCodes } from "../errors.js";
import { type Action, allowed, type CallerKind, callerKind, type Identity } from "./authorization.js";
import type { Authentication, Device, Registry } from "./registry.js";
import { parseSasToken, type SasToken, signedByAny } from "./sas.js";

/** Who a connection is. */
export interface Principal {
  deviceId: string;
  moduleId?: string;
  /** The client id as it connected (`deviceId` or `deviceId/moduleId`). */
  clientId: string;
  /** When its SAS token expires (ms since the epoch); the connection ends then. */
  expiresAt?: number;
  /** For a login on behalf of the actor: the devices of its auth chain after the actor's, ending with the one that signed. */
  via?: string[];
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

/**
 * The longest a SAS token may stay valid from now: IoT Hub's limit of ten years. A token
 * expiring later is refused, so a leaked one cannot live for centuries.
 */
export const MAX_SAS_LIFETIME_SECS = 10 * 365 * 24 * 3600;

/** Keys no identity has: what an unknown id's token is checked against. */
const NOBODY_KEYS = [randomBytes(32).toString("base64"), randomBytes(32).toString("base64")];

/** Checks `password`'s signature against keys nobody has, for the time it takes; never throws. */
function burnSignatureCheck(password: Buffer | undefined): void {
  try {
    if (password && password.length > 0) signedByAny(parseSasToken(password.toString("utf8")), NOBODY_KEYS);
  } catch {
    // A malformed token costs a known identity nothing more either.
  }
}

/**
 * A login refused before its token's signature was checked (unknown id, disabled device,
 * expired token, wrong audience, broken auth-chain) costs as much as one refused for a bad
 * signature, so how long a refusal takes does not tell which ids exist.
 */
function equalizeRefusal(err: unknown, password: Buffer | undefined): void {
  if (!(err instanceof EdgeHubError) || err.code !== ErrorCodes.AUTH_BAD_SIGNATURE)
    burnSignatureCheck(password);
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
  readonly #maxLifetimeSecs: number;
  readonly #kinds = new WeakMap<Identity, CallerKind>();

  /**
   * @param hostnames the hub names tokens and usernames may carry: this hub's hostname and,
   *   on an edge hub, its parent's hub name.
   * @param now clock in ms (injected for tests).
   * @param maxTokenLifetimeSecs how far in the future a SAS token may expire (default {@link MAX_SAS_LIFETIME_SECS}).
   */
  constructor(
    registry: Registry,
    hostnames: string[],
    now: () => number = Date.now,
    maxTokenLifetimeSecs = MAX_SAS_LIFETIME_SECS,
  ) {
    this.#registry = registry;
    this.#hostnames = hostnames.map((h) => h.toLowerCase());
    this.#now = now;
    this.#maxLifetimeSecs = maxTokenLifetimeSecs;
  }

  /**
   * True when `caller` may do `action` on `target`, by the hub's one table ({@link allowed}).
   * A caller's kind is looked up once per principal (a connection's lives as long as it):
   * whether a device is an edge device never changes, and a deleted one is disconnected.
   */
  allows(caller: Identity, action: Action, target: Identity): boolean {
    let kind = this.#kinds.get(caller);
    if (kind === undefined) {
      kind = callerKind(this.#registry, caller);
      if (kind === undefined) return false;
      this.#kinds.set(caller, kind);
    }
    return allowed(this.#registry, caller, action, target, kind);
  }

  /**
   * Refuses a token that has expired or expires further ahead than the lifetime cap.
   * Used for device, module and service tokens alike.
   */
  checkExpiry(expiry: number, who: string): void {
    const now = this.#now();
    if (expiry * 1000 <= now) throw deny(ErrorCodes.AUTH_TOKEN_EXPIRED, `token of ${who} has expired`);
    if (expiry * 1000 > now + this.#maxLifetimeSecs * 1000) {
      throw deny(
        ErrorCodes.AUTH_BAD_TOKEN,
        `token of ${who} expires more than ${this.#maxLifetimeSecs} s from now`,
      );
    }
  }

  /** The principal for these credentials, or an `AUTH_*` error saying why not. */
  authenticate(c: Credentials): Principal {
    try {
      return this.#authenticate(c);
    } catch (err) {
      equalizeRefusal(err, c.password);
      throw err;
    }
  }

  #authenticate(c: Credentials): Principal {
    const ids = parseClientId(c.clientId);
    if (!ids)
      throw deny(
        ErrorCodes.AUTH_UNKNOWN_IDENTITY,
        `client id ${JSON.stringify(c.clientId)} is not deviceId[/moduleId]`,
      );
    const login = this.#parseUsername(c.username, c.clientId);
    if (login === undefined) {
      throw deny(
        ErrorCodes.AUTH_BAD_TOKEN,
        `username must be {hostname}/${c.clientId}/?api-version=… for this hub`,
      );
    }
    const known = this.#registry.getDevice(ids.deviceId);
    const module =
      ids.moduleId === undefined ? undefined : this.#registry.getModule(ids.deviceId, ids.moduleId);
    if (!known || (ids.moduleId !== undefined && !module)) {
      throw deny(
        ErrorCodes.AUTH_UNKNOWN_IDENTITY,
        known ? `module ${c.clientId} is not registered` : `device ${ids.deviceId} is not registered`,
      );
    }
    const device = this.#enabledDevice(ids.deviceId);
    if (login.chain !== undefined) return this.#onBehalfOf(c, ids, device, login.chain);
    const expiresAt = this.#verify(c, (module ?? device).authentication, ids.deviceId, ids.moduleId);
    return expiresAt === undefined
      ? { ...ids, clientId: c.clientId }
      : { ...ids, clientId: c.clientId, expiresAt };
  }

  /**
   * A login by the last device of `chain` for the client. As Microsoft's edge hub sends it
   * (`AuthChainHelpers.ValidateAuthChain`, `ServiceIdentityTree`), the chain starts with the
   * client itself: `leaf1;edge1`, a module `edge1/mod1;edge1` or `edge2/mod2;edge2;edge1`
   * (its own device next). After the client, each device must be a child of the next, and
   * the last an edge device whose `$edgeHub` token (audience
   * `{hub}/devices/{edge}/modules/$edgeHub`, its keys) the client presented. The hub's own
   * login, `edge1/$edgeHub` with chain `edge1/$edgeHub;edge1`, is thus `$edgeHub` with its
   * own keys. Microsoft's edge hub never logs in on behalf of with a certificate: refused.
   */
  #onBehalfOf(
    c: Credentials,
    ids: { deviceId: string; moduleId?: string },
    actor: Device,
    chain: string[],
  ): Principal {
    if (chain[0] !== c.clientId) {
      throw deny(ErrorCodes.AUTH_NOT_IN_SCOPE, `auth-chain must start with ${c.clientId}`);
    }
    // The devices of the chain, from the client's own device up.
    const devices = ids.moduleId === undefined ? chain : chain.slice(1);
    if (devices[0] !== ids.deviceId) {
      throw deny(ErrorCodes.AUTH_NOT_IN_SCOPE, `auth-chain must name ${ids.deviceId} after ${c.clientId}`);
    }
    let child = actor;
    for (const id of devices.slice(1)) {
      const parent = this.#enabledDevice(id);
      if (
        !parent.capabilities.iotEdge ||
        !parent.deviceScope ||
        !child.parentScopes.includes(parent.deviceScope)
      ) {
        throw deny(ErrorCodes.AUTH_NOT_IN_SCOPE, `${child.deviceId} is not in the device scope of ${id}`);
      }
      child = parent;
    }
    if (!child.capabilities.iotEdge) {
      throw deny(ErrorCodes.AUTH_NOT_IN_SCOPE, `${child.deviceId} is not an edge device`);
    }
    if (!c.password || c.password.length === 0)
      throw deny(
        ErrorCodes.AUTH_BAD_TOKEN,
        `a login on behalf of ${c.clientId} needs the $edgeHub SAS token of ${child.deviceId} as password (no certificate)`,
      );
    const edgeHub = this.#registry.getModule(child.deviceId, "$edgeHub");
    if (!edgeHub)
      throw deny(ErrorCodes.AUTH_UNKNOWN_IDENTITY, `module ${child.deviceId}/$edgeHub is not registered`);
    const expiresAt = this.#verify(c, edgeHub.authentication, child.deviceId, "$edgeHub");
    const via = devices.length > 1 ? devices.slice(1) : [child.deviceId];
    return { ...ids, clientId: c.clientId, via, ...(expiresAt === undefined ? {} : { expiresAt }) };
  }

  #enabledDevice(deviceId: string): Device {
    const device = this.#registry.getDevice(deviceId);
    if (!device) throw deny(ErrorCodes.AUTH_UNKNOWN_IDENTITY, `device ${deviceId} is not registered`);
    if (device.status !== "enabled")
      throw deny(ErrorCodes.AUTH_IDENTITY_DISABLED, `device ${deviceId} is disabled`);
    return device;
  }

  /**
   * Checks the client's certificate or SAS token against `auth`, the credential of
   * `deviceId[/moduleId]`; returns when the token expires (ms), or undefined for a certificate.
   */
  #verify(
    c: Credentials,
    auth: Authentication,
    deviceId: string,
    moduleId: string | undefined,
  ): number | undefined {
    const who = moduleId === undefined ? deviceId : `${deviceId}/${moduleId}`;
    if ((!c.password || c.password.length === 0) && c.peer) {
      this.#checkCertificate(who, auth, c.peer);
      return undefined;
    }
    if (auth.type !== "sas" || !auth.symmetricKey) {
      throw deny(ErrorCodes.AUTH_BAD_SIGNATURE, `${who} does not authenticate with SAS keys`);
    }
    if (!c.password || c.password.length === 0)
      throw deny(ErrorCodes.AUTH_BAD_TOKEN, "no SAS token in the password");
    const token = parseSasToken(c.password.toString("utf8"));
    this.#checkToken(token, who);
    if (!signedByAny(token, [auth.symmetricKey.primaryKey, auth.symmetricKey.secondaryKey])) {
      throw deny(ErrorCodes.AUTH_BAD_SIGNATURE, `token of ${who} is not signed by its keys`);
    }
    return token.expiry * 1000;
  }

  /** Expiry and audience (`{one of our hostnames}/devices/{id}[/modules/{m}]`) of a token for `who`. */
  #checkToken(token: SasToken, who: string): void {
    this.checkExpiry(token.expiry, who);
    const [deviceId, moduleId] = who.split("/");
    const path = moduleId === undefined ? `/devices/${deviceId}` : `/devices/${deviceId}/modules/${moduleId}`;
    const slash = token.resource.indexOf("/");
    const audienceHost = slash < 0 ? "" : token.resource.slice(0, slash).toLowerCase();
    if (!this.#hostnames.includes(audienceHost) || token.resource.slice(slash) !== path) {
      throw deny(ErrorCodes.AUTH_WRONG_AUDIENCE, `token is for ${token.resource}, not ${path} on this hub`);
    }
  }

  /**
   * Checks the TLS client certificate of `deviceId` (or of its module `moduleId`) presented
   * without a token: over HTTPS (the scope sync call), or on AMQP, where the link's address
   * names the identity.
   */
  authenticateCertificate(deviceId: string, peer: PeerCertificate, moduleId?: string): Principal {
    const device = this.#enabledDevice(deviceId);
    if (moduleId === undefined) {
      this.#checkCertificate(deviceId, device.authentication, peer);
      return { deviceId, clientId: deviceId };
    }
    const clientId = `${deviceId}/${moduleId}`;
    const module = this.#registry.getModule(deviceId, moduleId);
    if (!module) throw deny(ErrorCodes.AUTH_UNKNOWN_IDENTITY, `module ${clientId} is not registered`);
    this.#checkCertificate(clientId, module.authentication, peer);
    return { deviceId, moduleId, clientId };
  }

  /**
   * Checks a SAS token presented over HTTPS by a device or module (the scope sync call);
   * returns the edge device it authenticates.
   */
  authenticateToken(tokenText: string): Principal {
    try {
      return this.#authenticateToken(tokenText);
    } catch (err) {
      equalizeRefusal(err, Buffer.from(tokenText));
      throw err;
    }
  }

  #authenticateToken(tokenText: string): Principal {
    const token = parseSasToken(tokenText);
    const slash = token.resource.indexOf("/");
    const parts = token.resource.slice(slash + 1).split("/");
    if (
      parts[0] !== "devices" ||
      !parts[1] ||
      (parts.length !== 2 && !(parts.length === 4 && parts[2] === "modules"))
    ) {
      throw deny(ErrorCodes.AUTH_WRONG_AUDIENCE, `token is for ${token.resource}, not a device or module`);
    }
    const ids =
      parts.length === 2 ? { deviceId: parts[1] } : { deviceId: parts[1], moduleId: parts[3] as string };
    const device = this.#enabledDevice(ids.deviceId);
    const module =
      ids.moduleId === undefined ? undefined : this.#registry.getModule(ids.deviceId, ids.moduleId);
    const auth = (module ?? device).authentication;
    const who = ids.moduleId === undefined ? ids.deviceId : `${ids.deviceId}/${ids.moduleId}`;
    if ((ids.moduleId !== undefined && !module) || auth.type !== "sas" || !auth.symmetricKey) {
      throw deny(ErrorCodes.AUTH_UNKNOWN_IDENTITY, `${who} has no SAS keys here`);
    }
    this.#checkToken(token, who);
    if (!signedByAny(token, [auth.symmetricKey.primaryKey, auth.symmetricKey.secondaryKey])) {
      throw deny(ErrorCodes.AUTH_BAD_SIGNATURE, `token of ${who} is not signed by its keys`);
    }
    return { ...ids, clientId: who, expiresAt: token.expiry * 1000 };
  }

  #checkCertificate(clientId: string, auth: Authentication, peer: PeerCertificate): void {
    if (auth.type === "selfSigned") {
      const prints = [
        auth.x509Thumbprint?.primaryThumbprint,
        auth.x509Thumbprint?.secondaryThumbprint,
      ].filter(Boolean);
      const sha1 = createHash("sha1").update(peer.der).digest("hex").toUpperCase();
      const sha256 = createHash("sha256").update(peer.der).digest("hex").toUpperCase();
      if (prints.includes(sha1) || prints.includes(sha256)) {
        // Nothing verified the chain of a thumbprint certificate: its validity is checked here.
        this.#checkValidity(clientId, peer);
        return;
      }
      throw deny(
        ErrorCodes.AUTH_BAD_CERTIFICATE,
        `certificate of ${clientId} does not match its registered thumbprints`,
      );
    }
    if (auth.type === "certificateAuthority") {
      // As IoT Hub: the CN is the identity's name, `{device}` or `{device}/{module}`; a
      // device's certificate is not a module's.
      if (peer.chainTrusted && peer.commonName === clientId) return;
      throw deny(
        ErrorCodes.AUTH_BAD_CERTIFICATE,
        `certificate of ${clientId} does not chain to a trusted CA with CN=${clientId}`,
      );
    }
    throw deny(ErrorCodes.AUTH_BAD_CERTIFICATE, `${clientId} does not authenticate with X.509`);
  }

  /** Refuses a certificate outside its notBefore/notAfter. */
  #checkValidity(clientId: string, peer: PeerCertificate): void {
    let from: number;
    let to: number;
    try {
      const cert = new X509Certificate(peer.der);
      from = Date.parse(cert.validFrom);
      to = Date.parse(cert.validTo);
    } catch {
      throw deny(ErrorCodes.AUTH_BAD_CERTIFICATE, `certificate of ${clientId} cannot be read`);
    }
    const now = this.#now();
    if (!(from <= now && now <= to)) {
      throw deny(ErrorCodes.AUTH_BAD_CERTIFICATE, `certificate of ${clientId} is not valid now`);
    }
  }

  /** The host a username names (one of ours) and the auth chain it carries, if any. */
  #parseUsername(
    username: string | undefined,
    clientId: string,
  ): { host: string; chain: string[] | undefined } | undefined {
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
    if (!this.#hostnames.includes(host)) return undefined;
    const chain = new URLSearchParams(rest.slice(1)).get("auth-chain");
    if (chain === null) return { host, chain: undefined };
    const ids = chain.split(";");
    return ids.every((id) => id.length > 0) ? { host, chain: ids } : undefined;
  }
}
