/**
 * Shared access signatures as IoT Hub issues and checks them:
 * `SharedAccessSignature sr={url-encoded resource}&sig={signature}&se={expiry}[&skn={policy}]`
 * with `sig = urlencode(base64(HMAC-SHA256(base64decode(key), sr + "\n" + se)))`.
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** A parsed SAS token. */
export interface SasToken {
  /** The resource URI, decoded (e.g. `hub.example/devices/dev1`). */
  resource: string;
  /** The `sr` field exactly as it appeared in the token (still encoded). */
  encodedResource: string;
  /** The signature, decoded from the token (base64 text). */
  signature: string;
  /** Expiry, seconds since the Unix epoch. */
  expiry: number;
  /** The policy name (`skn`), for service and policy tokens. */
  keyName?: string;
}

/** `encodeURIComponent` plus the characters it leaves alone that the Azure SDKs encode. */
export function encodeUriComponentStrict(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function invalid(reason: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.AUTH_BAD_TOKEN, reason);
}

/** Parses a token; throws `AUTH_BAD_TOKEN` naming what is wrong (never echoing the signature). */
export function parseSasToken(token: string): SasToken {
  const prefix = "SharedAccessSignature ";
  if (typeof token !== "string" || !token.startsWith(prefix)) {
    throw invalid("password is not a SharedAccessSignature token");
  }
  const fields = new Map<string, string>();
  for (const part of token.slice(prefix.length).split("&")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw invalid("token field without a name");
    const name = part.slice(0, eq);
    if (fields.has(name)) throw invalid(`token field ${name} appears twice`);
    fields.set(name, part.slice(eq + 1));
  }
  const sr = fields.get("sr");
  const sig = fields.get("sig");
  const se = fields.get("se");
  if (sr === undefined || sig === undefined || se === undefined) throw invalid("token lacks sr, sig or se");
  if (!/^\d{1,12}$/.test(se)) throw invalid("token expiry is not a number of seconds");
  let resource: string;
  let signature: string;
  try {
    resource = decodeURIComponent(sr);
    signature = decodeURIComponent(sig);
  } catch {
    throw invalid("token is not correctly url-encoded");
  }
  const skn = fields.get("skn");
  return {
    resource,
    encodedResource: sr,
    signature,
    expiry: Number(se),
    ...(skn === undefined ? {} : { keyName: decodeURIComponent(skn) }),
  };
}

/**
 * How a key becomes HMAC key bytes: IoT Hub decodes it from base64; Event Hubs and Service
 * Bus clients (@azure/core-amqp `signString`) take its text as UTF-8.
 */
export type KeyBytes = "base64" | "utf8";

/** The base64 HMAC-SHA256 of `sr + "\n" + se` under a key (base64 by default). */
export function sign(
  key: string,
  encodedResource: string,
  expiry: number,
  keyBytes: KeyBytes = "base64",
): string {
  return createHmac("sha256", Buffer.from(key, keyBytes))
    .update(`${encodedResource}\n${expiry}`)
    .digest("base64");
}

/** Builds a token for `resource` (decoded) valid until `expiry` (seconds). */
export function createSasToken(resource: string, key: string, expiry: number, keyName?: string): string {
  const sr = encodeUriComponentStrict(resource);
  const sig = encodeUriComponentStrict(sign(key, sr, expiry));
  return `SharedAccessSignature sr=${sr}&sig=${sig}&se=${expiry}${keyName ? `&skn=${encodeUriComponentStrict(keyName)}` : ""}`;
}

function equalSignatures(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * True when `token` is signed by one of `keys` (primary, secondary). The signature is
 * checked over the resource as the token encodes it, and over its strict re-encoding
 * (clients differ in the case of percent escapes).
 */
export function signedByAny(
  token: SasToken,
  keys: readonly string[],
  keyBytes: KeyBytes = "base64",
): boolean {
  const forms = new Set([token.encodedResource, encodeUriComponentStrict(token.resource)]);
  for (const key of keys) {
    for (const sr of forms) {
      if (equalSignatures(sign(key, sr, token.expiry, keyBytes), token.signature)) return true;
    }
  }
  return false;
}
