/**
 * `GET /edge/status`'s body (and `EdgeHub.status()`): the parent link and the backlog, the
 * settings in force, limits and pending method calls, the quota's shares, the event loop's
 * delay, and the watching view of the status board.
 */
import type { ParentConfig } from "../config/config.js";
import type { LagWindow } from "../event-loop-lag.js";
import type { MethodStats } from "../methods/direct-methods.js";
import type { AdmissionStats } from "../protocol/admission.js";
import type { SharesStatus } from "../routing/identity-shares.js";
import type { MessageStore } from "../store/index.js";
import type { Upstream } from "../upstream/upstream.js";
import { DEAD_LETTER_QUEUE, UPSTREAM_QUEUE } from "../vocabulary.js";
import type { StatusBoard } from "./status.js";

/** What the status is made of, read at the moment it is asked for. */
export interface HubStatusSources {
  store: MessageStore;
  parent: ParentConfig | undefined;
  upstream: Upstream | undefined;
  /** The `$edgeHub` settings in force. */
  settings: { version: number | undefined; routes: Record<string, unknown> };
  unroutedMessages: number;
  identityShares: SharesStatus | null;
  connectedClients: number;
  limits: AdmissionStats;
  methods: MethodStats;
  eventLoopDelayMs: LagWindow;
  board: StatusBoard | undefined;
}

/**
 * The parent link and the backlog: whether the parent is reachable, when it last was, the
 * last scope sync, the forwarder's counters, the `$upstream` and `$deadletter` queues,
 * `limits` (sockets open and unauthenticated, refused past a cap, closed at a deadline),
 * `methods` (direct method calls pending, and refused past a cap), and
 * the identities' shares of the quota (`identityShares`: the share, the largest
 * identities by live bytes, messages refused; null when off), and the event loop's delay
 * over the last 5 s (`eventLoopDelayMs`); and the watching view (ts/observe/status.ts:
 * `link`, `clients`, `backlog`, `drain`, `quota`, `counters`, `deadLetters`).
 */
export async function hubStatus(s: HubStatusSources): Promise<Record<string, unknown>> {
  const stats = await s.store.stats();
  const watch = await s.board?.snapshot(stats);
  const queue = (name: string) => stats.queues.find((q) => q.name === name) ?? null;
  const up = s.upstream;
  return {
    role: up ? "edge" : "root",
    parent: s.parent ? { hostname: s.parent.hostname, type: s.parent.type } : null,
    online: up?.online ?? null,
    lastOnlineAt: up?.lastOnlineAt ? new Date(up.lastOnlineAt).toISOString() : null,
    lastScopeSyncAt: up?.scope?.lastSyncedAt ? new Date(up.scope.lastSyncedAt).toISOString() : null,
    forwarder: up ? up.stats() : null,
    upstreamQueue: queue(UPSTREAM_QUEUE),
    deadLetterQueue: queue(DEAD_LETTER_QUEUE),
    settingsVersion: s.settings.version ?? null,
    routes: Object.keys(s.settings.routes).length,
    unroutedMessages: s.unroutedMessages,
    identityShares: s.identityShares,
    store: {
      bytes: stats.bytes,
      maxSizeBytes: stats.maxSizeBytes,
      expired: stats.expired,
      dropped: stats.dropped,
    },
    connectedClients: s.connectedClients,
    limits: s.limits,
    methods: s.methods,
    eventLoopDelayMs: s.eventLoopDelayMs,
    ...watch,
  };
}
