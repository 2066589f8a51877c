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
import type * as v from "valibot";
import { check, group, integer, key } from "./declare.js";

/** Largest timeout accepted: Node's timers take 2^31-1 ms at most. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

const count = integer(1, Number.MAX_SAFE_INTEGER, "a positive integer");
const ms = integer(1, MAX_TIMEOUT_MS, `a positive integer up to ${MAX_TIMEOUT_MS}`);

/** The `limits` keys, each with its default. */
export const limitsSchema = group({
  maxConnections: key(
    count,
    1000,
    "Sockets open at once over every listener (MQTT/TLS, AMQP/TLS, HTTPS, WebSocket).",
  ),
  maxUnauthenticatedPerAddress: key(
    count,
    64,
    "Sockets of one remote address (an IPv6 /64) not yet authenticated.",
  ),
  tlsHandshakeTimeoutMs: key(ms, 10_000, "Time to complete the TLS handshake, in ms (Node's is 120000)."),
  mqttConnectTimeoutMs: key(ms, 10_000, "Time from the TLS handshake to MQTT CONNECT, in ms."),
  httpHeadersTimeoutMs: key(
    ms,
    10_000,
    "HTTPS: time to receive a request's headers, in ms (Node's headersTimeout).",
  ),
  httpRequestTimeoutMs: key(
    ms,
    30_000,
    "HTTPS: time to receive a whole request, in ms (Node's requestTimeout).",
  ),
  httpKeepAliveTimeoutMs: key(ms, 5_000, "HTTPS: an idle keep-alive connection is closed after this, in ms."),
  maxPendingMethodCallsPerTarget: key(
    count,
    16,
    "Direct method calls pending to one device or module; past it 429.",
  ),
  maxPendingMethodCallsPerCaller: key(
    count,
    128,
    "Direct method calls pending from one caller (the service, a module, the parent); past it 429.",
  ),
  maxPendingMethodBytes: key(
    count,
    8 * 1024 * 1024,
    "Request payload bytes held by all pending direct method calls; past it 429.",
  ),
});

/** `limits` as written in the config; every field has a default. */
export type LimitsInput = v.InferInput<typeof limitsSchema>;

/** Validated limits. */
export type Limits = v.InferOutput<typeof limitsSchema>;

/** The defaults (see the module comment for the sizing). */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze(check(limitsSchema, {}));
