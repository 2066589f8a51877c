/**
 * Optimistic concurrency as IoT Hub does it: `If-Match` carries an etag, quoted (`"abc"`,
 * what the SDKs send), weak (`W/"abc"`) or bare, or the wildcard `*` (the SDKs send it
 * quoted too: `"*"`, see `Registry._ensureQuoted` in azure-iothub).
 */
import { ApiError } from "./http.js";

/** An etag without its quotes and weak prefix; `*` for the wildcard. */
export function bareEtag(value: string): string {
  return value
    .trim()
    .replace(/^W\//, "")
    .replace(/^"(.*)"$/, "$1");
}

/** The `If-Match` of a request, bare; undefined when absent or empty. */
export function ifMatchOf(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined || value.trim() === "") return undefined;
  return bareEtag(value);
}

/** Throws 412 unless `ifMatch` (bare, or undefined for none) is absent, `*`, or `current`'s etag. */
export function checkIfMatch(ifMatch: string | undefined, current: string, what: string): void {
  if (ifMatch === undefined || ifMatch === "*" || ifMatch === bareEtag(current)) return;
  throw new ApiError(412, "PreconditionFailed", `${what} changed since etag ${ifMatch}`);
}
