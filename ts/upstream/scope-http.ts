/**
 * One HTTPS exchange with the parent, for every JSON call an edge makes on it (the
 * device-scope calls, one identity on behalf of, module identity writes), and Microsoft's
 * retry policy around the scope calls. A body is bounded in bytes and time and parsed with
 * `parseJson` (null-prototype objects); what fails says whether trying again may help.
 */
import https from "node:https";
import type { ParentConfig } from "../config/config.js";
import { parseJson } from "../json.js";
import type { Logger } from "../log.js";
import type { ParentCredentials } from "./credentials.js";

/** Bytes of one page's body, at most; the download is cut off past it and the sync fails. */
export const MAX_SCOPE_PAGE_BYTES = 8 * 1024 * 1024;
/** Silence on the socket that ends a call. */
const TIMEOUT_MS = 15_000;
/** Whole time a page may take: a trickle of bytes never trips the silence timeout. */
const PAGE_DEADLINE_MS = 60_000;

/**
 * Statuses never retried: `NestedDeviceScopeApiClient.ErrorDetectionStrategy.NonTransientHttpStatusCodes`
 * (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/NestedDeviceScopeApiClient.cs#ErrorDetectionStrategy;
 * `DeviceScopeApiClient.cs` has the same set). Every other failed status (429, 5xx, …) is.
 */
const NON_TRANSIENT = new Set([400, 401, 403, 404, 405, 406]);
/** Retries after the first attempt: `NestedDeviceScopeApiClient.RetryCount`. */
export const SCOPE_RETRIES = 2;

/** A scope call that failed; `status` when the parent answered, `transient` when a retry may help. */
export class ScopeCallError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** The parent has no such route (404, 405): an older parent, to be asked the legacy form. */
export function noRoute(err: unknown): err is ScopeCallError {
  return err instanceof ScopeCallError && (err.status === 404 || err.status === 405);
}

/** Where and how to reach the parent. */
export interface ScopeEndpoint {
  host: string;
  port: number;
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername: string };
}

/** The parent's HTTPS endpoint, with this hub's TLS material. */
export function parentEndpoint(parent: ParentConfig, credentials: ParentCredentials): ScopeEndpoint {
  return { host: parent.hostname, port: parent.httpsPort, tls: credentials.tls() };
}

/** One call: the path (and query) on the parent, the token, a JSON body, more headers. */
export interface ScopeRequest {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  token: string | undefined;
  body?: string;
  /** Headers besides Authorization and Content-Type (`If-Match`, the origin edge). */
  headers?: Record<string, string>;
  /** Most bytes of the answer's body; default {@link MAX_SCOPE_PAGE_BYTES}. */
  maxBytes?: number;
}

/**
 * The wait before retry `retry` (0 for the first): Microsoft's `ExponentialBackoff(2, 1 s, 10 s, 4 s)`
 * (`NestedDeviceScopeApiClient.TransientRetryStrategy`), computed as the Transient Fault
 * Handling block's `ExponentialBackoff.GetShouldRetry` does:
 * `min(min + (2^retry − 1) × random[0.8 × delta, 1.2 × delta), max)` — 1 s, then 4.2–5.8 s.
 */
export function scopeBackoffMs(retry: number, random: () => number = Math.random): number {
  const delta = 4000 * (0.8 + 0.4 * random());
  return Math.floor(Math.min(1000 + (2 ** retry - 1) * delta, 10_000));
}

/**
 * Runs `call`, retrying a transient failure {@link SCOPE_RETRIES} times with `delay(retry)`
 * between attempts (network errors, timeouts and statuses outside the non-transient set).
 */
export async function withScopeRetries<T>(
  call: () => Promise<T>,
  delay: (retry: number) => number,
  onRetry: (retry: number, err: ScopeCallError) => void,
): Promise<T> {
  for (let retry = 0; ; retry++) {
    try {
      return await call();
    } catch (err) {
      if (!(err instanceof ScopeCallError) || !err.transient || retry >= SCOPE_RETRIES) throw err;
      onRetry(retry, err);
      await new Promise((resolve) => setTimeout(resolve, delay(retry)));
    }
  }
}

/** A socket or TLS failure: transient, as every exception but argument errors is to Microsoft's. */
function asScopeError(err: Error): ScopeCallError {
  return err instanceof ScopeCallError ? err : new ScopeCallError(err.message, true);
}

/**
 * One call's answer, parsed: at most {@link MAX_SCOPE_PAGE_BYTES}, within {@link PAGE_DEADLINE_MS};
 * undefined for a 204. Any other status than 200 or 204 fails with it.
 */
export function scopeCall(to: ScopeEndpoint, call: ScopeRequest): Promise<unknown> {
  const headers: Record<string, string | number> = { ...call.headers };
  // The header names as NestedDeviceScopeApiClient#GetIdentitiesInTargetScope adds them.
  if (call.token) headers.Authorization = call.token;
  if (call.body !== undefined) {
    headers["Content-Type"] = "application/json; charset=utf-8";
    headers["Content-Length"] = Buffer.byteLength(call.body);
  }
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: to.host,
        port: to.port,
        path: call.path,
        method: call.method,
        ...to.tls,
        headers,
        timeout: TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        const maxBytes = call.maxBytes ?? MAX_SCOPE_PAGE_BYTES;
        res.on("data", (c: Buffer) => {
          bytes += c.length;
          if (bytes > maxBytes)
            req.destroy(
              new ScopeCallError(
                maxBytes === MAX_SCOPE_PAGE_BYTES
                  ? `a scope page is over ${MAX_SCOPE_PAGE_BYTES} bytes (MAX_SCOPE_PAGE_BYTES)`
                  : `an answer over ${maxBytes} bytes`,
                false,
              ),
            );
          else chunks.push(c);
        });
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = res.statusCode ?? 0;
          if (status === 204) return resolve(undefined);
          if (status !== 200)
            return reject(
              new ScopeCallError(
                `scope call answered ${status}: ${text.slice(0, 200)}`,
                !NON_TRANSIENT.has(status),
                status,
              ),
            );
          try {
            resolve(parseJson(text));
          } catch {
            reject(new ScopeCallError("scope call answered with something other than JSON", false));
          }
        });
        res.on("error", (err) => reject(asScopeError(err)));
      },
    );
    const deadline = setTimeout(
      () => req.destroy(new ScopeCallError(`a scope page took over ${PAGE_DEADLINE_MS} ms`, true)),
      PAGE_DEADLINE_MS,
    );
    req.on("close", () => clearTimeout(deadline));
    req.on("timeout", () =>
      req.destroy(new ScopeCallError(`no answer from the parent in ${TIMEOUT_MS} ms`, true)),
    );
    req.on("error", (err) => reject(asScopeError(err)));
    req.end(call.body);
  });
}

/**
 * A scope call on the parent with Microsoft's retries ({@link withScopeRetries}), a fresh
 * `$edgeHub` token for every attempt; retries are logged.
 */
export function parentScopeCall(
  parent: ParentConfig,
  credentials: ParentCredentials,
  request: Omit<ScopeRequest, "token">,
  delay: (retry: number) => number,
  log: Logger,
): Promise<unknown> {
  const to = parentEndpoint(parent, credentials);
  return withScopeRetries(
    async () => scopeCall(to, { ...request, token: await credentials.token() }),
    delay,
    (retry, err) =>
      log.log("info", "scope-call-retry", { retry: retry + 1, reason: err.message.slice(0, 200) }),
  );
}
