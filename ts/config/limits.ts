/**
 * The `limits` config key: what one socket may hold, and for how long, before it has
 * proved who it is. Defaults are sized for a 512 MB–1 GB board (measured in
 * docs/benchmarks.md, `benches/sockets.bench.mjs`):
 *
 * - an idle authenticated MQTT connection costs ~55 KB of RSS, so 1000 of them ~55 MB;
 * - an unauthenticated socket costs ~10 KB before its ClientHello and ~35 KB after the
 *   handshake (no CONNECT, or a half-sent HTTPS request), so 1000 of them stay under ~40 MB;
 * - a few seconds of handshake and header deadline keep such sockets from piling up
 *   (Node's own defaults are 120 s for the TLS handshake and 60 s for the headers), and
 *   the per-address cap keeps one host from taking every slot from the devices;
 * - a pending direct method call is held up to 300 s: one costs ~1.3 KB of heap in
 *   `DirectMethods` besides its payload and its HTTPS request (measured with 10,000 held),
 *   so the caps (16 per target, 128 per caller) bound the calls, and 8 MiB the payloads.
 *
 * RSS per socket × `maxConnections` must stay well under the board's budget for the hub
 * (the store's block cache and memtables take ~100 MB of it): lower it on a 512 MB board
 * that runs other daemons.
 */
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** `limits` as written in the config; every field has a default. */
export interface LimitsInput {
  /** Sockets open at once over every listener (MQTT/TLS, HTTPS, WebSocket). Default 1000. */
  maxConnections?: number;
  /** Sockets of one remote address (an IPv6 /64) not yet authenticated. Default 64. */
  maxUnauthenticatedPerAddress?: number;
  /** Time to complete the TLS handshake, in ms. Default 10000 (Node's is 120000). */
  tlsHandshakeTimeoutMs?: number;
  /** Time from the TLS handshake to MQTT CONNECT, in ms. Default 10000. */
  mqttConnectTimeoutMs?: number;
  /** HTTPS: time to receive a request's headers, in ms (Node's `headersTimeout`). Default 10000. */
  httpHeadersTimeoutMs?: number;
  /** HTTPS: time to receive a whole request, in ms (Node's `requestTimeout`). Default 30000. */
  httpRequestTimeoutMs?: number;
  /** HTTPS: an idle keep-alive connection is closed after this, in ms. Default 5000. */
  httpKeepAliveTimeoutMs?: number;
  /** Direct method calls pending to one device or module; past it 429. Default 16. */
  maxPendingMethodCallsPerTarget?: number;
  /** Direct method calls pending from one caller (the service, a module, the parent); past it 429. Default 128. */
  maxPendingMethodCallsPerCaller?: number;
  /** Request payload bytes held by all pending direct method calls; past it 429. Default 8 MiB. */
  maxPendingMethodBytes?: number;
}

/** Validated limits. */
export interface Limits {
  maxConnections: number;
  maxUnauthenticatedPerAddress: number;
  tlsHandshakeTimeoutMs: number;
  mqttConnectTimeoutMs: number;
  httpHeadersTimeoutMs: number;
  httpRequestTimeoutMs: number;
  httpKeepAliveTimeoutMs: number;
  maxPendingMethodCallsPerTarget: number;
  maxPendingMethodCallsPerCaller: number;
  maxPendingMethodBytes: number;
}

/** The defaults (see the module comment for the sizing). */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxConnections: 1000,
  maxUnauthenticatedPerAddress: 64,
  tlsHandshakeTimeoutMs: 10_000,
  mqttConnectTimeoutMs: 10_000,
  httpHeadersTimeoutMs: 10_000,
  httpRequestTimeoutMs: 30_000,
  httpKeepAliveTimeoutMs: 5_000,
  maxPendingMethodCallsPerTarget: 16,
  maxPendingMethodCallsPerCaller: 128,
  maxPendingMethodBytes: 8 * 1024 * 1024,
});

/** Largest timeout accepted: Node's timers take 2^31-1 ms at most. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Validates the `limits` key (named `key` in errors) over {@link DEFAULT_LIMITS}. */
export function limitsConfig(key: string, raw: unknown): Limits {
  if (raw === undefined) return { ...DEFAULT_LIMITS };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new EdgeHubError(ErrorCodes.CONFIG_INVALID, `config key ${key}: must be an object`);
  const input = raw as Record<string, unknown>;
  const out: Limits = { ...DEFAULT_LIMITS };
  for (const [name, value] of Object.entries(input)) {
    if (!Object.hasOwn(DEFAULT_LIMITS, name))
      throw new EdgeHubError(ErrorCodes.CONFIG_INVALID, `config key ${key}.${name}: is not a known key`);
    const max = name.endsWith("Ms") ? MAX_TIMEOUT_MS : Number.MAX_SAFE_INTEGER;
    if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > max)
      throw new EdgeHubError(
        ErrorCodes.CONFIG_INVALID,
        `config key ${key}.${name}: must be a positive integer${max === MAX_TIMEOUT_MS ? ` up to ${max}` : ""}`,
      );
    out[name as keyof Limits] = value;
  }
  // Node refuses a header deadline past the request deadline.
  if (out.httpHeadersTimeoutMs > out.httpRequestTimeoutMs)
    throw new EdgeHubError(
      ErrorCodes.CONFIG_INVALID,
      `config key ${key}.httpHeadersTimeoutMs: must not exceed ${key}.httpRequestTimeoutMs`,
    );
  return out;
}
