/**
 * The records of a parent's device scope, checked before they reach the registry. The
 * parent is trusted to say *who* is in scope, not to send anything it likes: a record
 * whose ids break the registry's own rule ({@link isIdentityId}) or whose fields do not
 * have IoT Hub's shape is skipped with a reason, never half-read and never thrown. Every
 * string kept is bounded, so the records a sync holds are bounded by their count.
 */
import { type Authentication, type Device, ID_RULE, isIdentityId, type Module } from "../auth/registry.js";
import { isJsonObject, own } from "../json.js";

/** A record that did not validate, and why. */
export interface Skipped {
  skipped: string;
}

/** Longest `generationId`, `etag`, `statusReason`, `managedBy`, scope string kept (IoT Hub's are far shorter). */
export const MAX_FIELD_CHARS = 256;
/** IoT Hub's symmetric keys: base64 of 16 to 64 bytes. */
const KEY_BYTES = { min: 16, max: 64 };
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** SHA-1 or SHA-256, hex, with or without colons (the registry stores them without). */
const THUMBPRINT = /^(?:[0-9A-Fa-f]{2}:?){19}[0-9A-Fa-f]{2}$|^(?:[0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/;
const TYPES: readonly Authentication["type"][] = ["sas", "selfSigned", "certificateAuthority", "none"];

class Invalid extends Error {}

/** `j[key]` as a bounded string, `fallback` when absent or null. */
function text(j: unknown, key: string, fallback?: string): string {
  const v = own(j, key);
  if ((v === undefined || v === null) && fallback !== undefined) return fallback;
  if (typeof v !== "string" || v.length > MAX_FIELD_CHARS)
    throw new Invalid(`${key} is not a string of at most ${MAX_FIELD_CHARS} characters`);
  return v;
}

/** `j[key]` as a string, or undefined when absent, null or "". */
function optionalText(j: unknown, key: string): string | undefined {
  const v = own(j, key);
  return v === undefined || v === null || v === "" ? undefined : text(j, key);
}

function id(j: unknown, key: string): string {
  const v = own(j, key);
  if (!isIdentityId(v)) throw new Invalid(`${key} is not ${ID_RULE}`);
  return v;
}

function key(k: unknown, name: string): string {
  if (
    typeof k !== "string" ||
    k.length > 4 * Math.ceil(KEY_BYTES.max / 3) ||
    !BASE64.test(k) ||
    Buffer.from(k, "base64").length < KEY_BYTES.min ||
    Buffer.from(k, "base64").length > KEY_BYTES.max
  )
    throw new Invalid(`${name} is not base64 of ${KEY_BYTES.min}-${KEY_BYTES.max} bytes`);
  return k;
}

function thumbprint(t: unknown, name: string): string {
  if (typeof t !== "string" || !THUMBPRINT.test(t))
    throw new Invalid(`${name} is not a SHA-1 or SHA-256 thumbprint`);
  return t;
}

function authentication(raw: unknown): Authentication {
  if (!isJsonObject(raw)) throw new Invalid("authentication is not an object");
  const type = own(raw, "type");
  if (!TYPES.includes(type as Authentication["type"]))
    throw new Invalid("authentication.type is not sas, selfSigned, certificateAuthority or none");
  const out: Authentication = { type: type as Authentication["type"] };
  if (type === "sas") {
    const k = own(raw, "symmetricKey");
    const primaryKey = key(own(k, "primaryKey"), "symmetricKey.primaryKey");
    const secondary = own(k, "secondaryKey");
    const secondaryKey =
      secondary === undefined || secondary === null
        ? primaryKey
        : key(secondary, "symmetricKey.secondaryKey");
    out.symmetricKey = { primaryKey, secondaryKey };
  } else if (type === "selfSigned") {
    const t = own(raw, "x509Thumbprint");
    const primaryThumbprint = thumbprint(own(t, "primaryThumbprint"), "x509Thumbprint.primaryThumbprint");
    const secondary = own(t, "secondaryThumbprint");
    out.x509Thumbprint = {
      primaryThumbprint,
      secondaryThumbprint:
        secondary === undefined || secondary === null
          ? null
          : thumbprint(secondary, "x509Thumbprint.secondaryThumbprint"),
    };
  }
  return out;
}

function checked<T>(build: () => T): T | Skipped {
  try {
    return build();
  } catch (err) {
    if (err instanceof Invalid) return { skipped: err.message };
    throw err;
  }
}

/** A device as the parent's JSON has it, or why it is skipped. */
export function deviceFromJson(j: unknown): Device | Skipped {
  return checked(() => {
    if (!isJsonObject(j)) throw new Invalid("the record is not an object");
    const status = own(j, "status");
    if (status !== "enabled" && status !== "disabled") throw new Invalid("status is not enabled or disabled");
    const caps = own(j, "capabilities");
    const iotEdge = own(caps, "iotEdge");
    if (iotEdge !== undefined && typeof iotEdge !== "boolean")
      throw new Invalid("capabilities.iotEdge is not a boolean");
    const scopes = own(j, "parentScopes") ?? [];
    // IoT Hub gives a device one parent at most.
    if (!Array.isArray(scopes) || scopes.length > 1)
      throw new Invalid("parentScopes is not a list of at most one scope");
    const d: Device = {
      deviceId: id(j, "deviceId"),
      generationId: text(j, "generationId", ""),
      etag: text(j, "etag", ""),
      status,
      authentication: authentication(own(j, "authentication")),
      capabilities: { iotEdge: iotEdge === true },
      parentScopes: scopes.map((_, i) => text(scopes, String(i))),
    };
    const statusReason = optionalText(j, "statusReason");
    if (statusReason !== undefined) d.statusReason = statusReason;
    const deviceScope = optionalText(j, "deviceScope");
    if (deviceScope !== undefined) d.deviceScope = deviceScope;
    return d;
  });
}

/** A module as the parent's JSON has it, or why it is skipped. */
export function moduleFromJson(j: unknown): Module | Skipped {
  return checked(() => {
    if (!isJsonObject(j)) throw new Invalid("the record is not an object");
    const m: Module = {
      deviceId: id(j, "deviceId"),
      moduleId: id(j, "moduleId"),
      generationId: text(j, "generationId", ""),
      etag: text(j, "etag", ""),
      authentication: authentication(own(j, "authentication")),
    };
    const managedBy = optionalText(j, "managedBy");
    if (managedBy !== undefined) m.managedBy = managedBy;
    return m;
  });
}

/** True for a record that did not validate. */
export function isSkipped(r: object): r is Skipped {
  return Object.hasOwn(r, "skipped");
}

/** One page as the parent answered it (`ScopeResult`), its shape checked (records not yet). */
export interface ScopePage {
  devices: unknown[];
  modules: unknown[];
  continuationLink: unknown;
}

/**
 * A page's shape: `{devices, modules, continuationLink}`, each key allowed null as in
 * `ScopeResult` (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/ScopeResult.cs#ScopeResult).
 */
export function pageOf(body: unknown): ScopePage {
  const devices = own(body, "devices") ?? [];
  const modules = own(body, "modules") ?? [];
  if (!isJsonObject(body) || !Array.isArray(devices) || !Array.isArray(modules))
    throw new Error("a scope page is not {devices: [...], modules: [...], continuationLink}");
  return { devices, modules, continuationLink: own(body, "continuationLink") ?? null };
}

/** Longest `continuationLink` followed or sent back. */
export const MAX_LINK_CHARS = 2048;

/** Resolves relative links only: a link that names a host leaves this origin. */
const NO_HOST = "https://parent.invalid";

function decoded(path: string): string | undefined {
  try {
    return decodeURIComponent(path);
  } catch {
    return undefined;
  }
}

/** A link for the error message: bounded, whatever the parent sent. */
function shown(link: unknown): string {
  return typeof link === "string" ? JSON.stringify(link.slice(0, 200)) : typeof link;
}

/**
 * The legacy call's next page (`GET {continuationLink}` as given, `DeviceScopeApiClient.cs#GetNextAsync`):
 * null after the last. The link must be the scope call at `base` again as a path on the
 * parent with a query (printable ASCII, bounded; never another host or call; escapes
 * compared decoded, as parents differ in what they escape), and never one already
 * followed. Returns the path as checked (dot segments resolved, no fragment).
 */
export function legacyNext(link: unknown, base: string, followed: ReadonlySet<string>): string | null {
  if (link === null || link === "") return null;
  let path: string | undefined;
  if (typeof link === "string" && link.length <= MAX_LINK_CHARS && /^\/[\x21-\x7e]*$/.test(link)) {
    try {
      const url = new URL(link, NO_HOST);
      const p = decoded(url.pathname);
      if (url.origin === NO_HOST && p !== undefined && p === decoded(base) && url.search.length > 1)
        path = `${url.pathname}${url.search}`;
    } catch {
      path = undefined;
    }
  }
  if (path === undefined)
    throw new Error(`continuationLink is not a path of this scope call on the parent: ${shown(link)}`);
  if (followed.has(path)) throw new Error("continuationLink loops to a page already read");
  return path;
}

/**
 * The nested call's next page: the link goes back as is in the next POST's body
 * (`NestedDeviceScopeApiClient.cs#GetNextAsync`), so it is opaque here, but bounded,
 * printable, and never one this target's sequence already sent (a loop). Null after the last.
 */
export function nestedNext(link: unknown, sent: ReadonlySet<string>): string | null {
  // ServiceProxy.NestedServiceIdentitiesIterator#GetNext: a blank link ends the sequence.
  if (link === null || (typeof link === "string" && link.trim() === "")) return null;
  if (typeof link !== "string" || link.length > MAX_LINK_CHARS || !/^[\x20-\x7e]+$/.test(link))
    throw new Error(`continuationLink is not up to ${MAX_LINK_CHARS} printable characters: ${shown(link)}`);
  if (sent.has(link)) throw new Error("continuationLink loops to a page already read");
  return link;
}
