/**
 * The operator's view of a running hub, built in one place for `GET /edge/status`, the
 * `edgehub status` command, `/metrics` and the status page: the parent link and since
 * when, the clients, the backlog per queue and per device, the drain rate and its ETA,
 * the quota, and what was expired, dropped or dead-lettered. Everything comes from the
 * store's in-memory figures and counters kept here; nothing grows with the traffic.
 */
import type { SharesStatus } from "../routing/identity-shares.js";
import type { MessageStore, StoreStats } from "../store/index.js";
import { DEAD_LETTER_QUEUE, ownerOf } from "../vocabulary.js";
import { BacklogHistory, type DrainRate, type Sample } from "./history.js";

/** Client ids listed in the status at most (the count is always exact). */
export const MAX_LISTED_CLIENTS = 100;
/** Queues listed at most, the largest first. */
export const MAX_LISTED_QUEUES = 50;
/** Devices listed at most, the largest first. */
export const MAX_LISTED_DEVICES = 20;
/** Recent dead letters shown. */
export const RECENT_DEAD_LETTERS = 10;
const MAX_REASON = 200;

/** The parent link as the status shows it. */
export interface LinkStatus {
  /** `none` on a root hub (it has no parent). */
  state: "online" | "offline" | "none";
  /** When it entered that state (ISO 8601); the hub's start for the first state. */
  since: string | null;
}

/** One queue's backlog. */
export interface QueueBacklog {
  queue: string;
  messages: number;
  bytes: number;
  oldestAgeMs: number | null;
}

/**
 * One device's (or module's) part of the backlog: `to` — messages waiting to be delivered
 * to it (its cloud-to-device and module-input queues); `from` — live bytes it sent that
 * are still stored (counted when `maxSizeBytesPerIdentity` is on; messages are not).
 */
export interface DeviceBacklog {
  id: string;
  direction: "to" | "from";
  messages: number | null;
  bytes: number;
  oldestAgeMs: number | null;
}

/** A message moved to `$deadletter`, without its body. */
export interface DeadLetter {
  offset: number;
  at: string;
  /** The queue it was refused from. */
  queue: string;
  reason: string;
  bodyBytes: number;
}

/** What `GET /edge/status` adds for watching the hub. */
export interface WatchStatus {
  at: string;
  link: LinkStatus;
  clients: { connected: number; ids: string[] };
  backlog: {
    messages: number;
    bytes: number;
    oldestAgeMs: number | null;
    queues: QueueBacklog[];
    /** Queues left out of `queues` (only the largest are listed). */
    moreQueues: number;
    devices: DeviceBacklog[];
  };
  drain: DrainRate;
  quota: { usedBytes: number; maxSizeBytes: number; usedPercent: number };
  /** Since the store was created. */
  counters: { expired: number; dropped: number; deadLettered: number };
  deadLetters: DeadLetter[];
}

/** Where the board reads the hub from. */
export interface BoardSources {
  store: MessageStore;
  /** The parent link (undefined on a root): `online` now, and events when it changes. */
  link:
    | {
        readonly online: boolean;
        on(event: "online" | "offline", listener: () => void): unknown;
      }
    | undefined;
  /** Client ids connected now, and how many. */
  clients(): { count: number; ids: Iterable<string> };
  /** The identity shares (null when off). */
  shares(): SharesStatus | null;
  /** Queues that hold a backlog waiting for a consumer (not the root's events log, not dead letters). */
  isBacklog(queue: string): boolean;
}

/** The status board of one hub: link tracking, the backlog history, and the snapshot. */
export class StatusBoard {
  readonly history: BacklogHistory;
  readonly #sources: BoardSources;
  #link: { state: LinkStatus["state"]; since: number };

  constructor(sources: BoardSources, sampleEveryMs = 1000) {
    this.#sources = sources;
    const link = sources.link;
    this.#link = { state: link ? (link.online ? "online" : "offline") : "none", since: Date.now() };
    link?.on("online", () => this.#moved("online"));
    link?.on("offline", () => this.#moved("offline"));
    this.history = new BacklogHistory(
      {
        stats: () => sources.store.statsNow(),
        online: () => (link ? link.online : null),
        isBacklog: sources.isBacklog,
      },
      sampleEveryMs,
    );
  }

  /** The parent link now. */
  get link(): LinkStatus {
    return { state: this.#link.state, since: new Date(this.#link.since).toISOString() };
  }

  /** The backlog samples, oldest first (the status page's chart). */
  samples(): Sample[] {
    return this.history.samples();
  }

  /** The whole view; `stats` when the caller has read them already. */
  async snapshot(stats?: StoreStats): Promise<WatchStatus> {
    const s = stats ?? (await this.#sources.store.stats());
    const clients = this.#sources.clients();
    const ids: string[] = [];
    for (const id of clients.ids) {
      if (ids.length === MAX_LISTED_CLIENTS) break;
      ids.push(id);
    }
    ids.sort();
    const backlog = s.queues.filter((q) => this.#sources.isBacklog(q.name));
    let messages = 0;
    let bytes = 0;
    let oldestAgeMs: number | null = null;
    for (const q of backlog) {
      messages += q.count;
      bytes += q.bytes;
      if (q.oldestAgeMs !== null) oldestAgeMs = Math.max(oldestAgeMs ?? 0, q.oldestAgeMs);
    }
    const listed = backlog
      .filter((q) => q.count > 0)
      .sort((a, b) => b.bytes - a.bytes || (a.name < b.name ? -1 : 1));
    const dead = s.queues.find((q) => q.name === DEAD_LETTER_QUEUE);
    return {
      at: new Date().toISOString(),
      link: this.link,
      clients: { connected: clients.count, ids },
      backlog: {
        messages,
        bytes,
        oldestAgeMs,
        queues: listed
          .slice(0, MAX_LISTED_QUEUES)
          .map((q) => ({ queue: q.name, messages: q.count, bytes: q.bytes, oldestAgeMs: q.oldestAgeMs })),
        moreQueues: Math.max(0, listed.length - MAX_LISTED_QUEUES),
        devices: this.#devices(s),
      },
      drain: this.history.rate(messages),
      quota: {
        usedBytes: s.bytes,
        maxSizeBytes: s.maxSizeBytes,
        usedPercent: Math.round((s.bytes / s.maxSizeBytes) * 1000) / 10,
      },
      counters: { expired: s.expired, dropped: s.dropped, deadLettered: dead?.tail ?? 0 },
      deadLetters: dead && dead.count > 0 ? await this.#deadLetters(dead.head, dead.tail) : [],
    };
  }

  close(): void {
    this.history.close();
  }

  #moved(state: "online" | "offline"): void {
    if (this.#link.state !== state) this.#link = { state, since: Date.now() };
  }

  /** The largest per-device parts of the backlog: queues to a client, and what senders have stored. */
  #devices(s: StoreStats): DeviceBacklog[] {
    const to = new Map<string, DeviceBacklog>();
    for (const q of s.queues) {
      const owner = q.count > 0 ? ownerOf(q.name) : undefined;
      if (!owner) continue;
      const d = to.get(owner.clientId) ?? {
        id: owner.clientId,
        direction: "to",
        messages: 0,
        bytes: 0,
        oldestAgeMs: null,
      };
      d.messages = (d.messages ?? 0) + q.count;
      d.bytes += q.bytes;
      if (q.oldestAgeMs !== null) d.oldestAgeMs = Math.max(d.oldestAgeMs ?? 0, q.oldestAgeMs);
      to.set(owner.clientId, d);
    }
    const from: DeviceBacklog[] = (this.#sources.shares()?.top ?? []).map((t) => ({
      id: t.identity,
      direction: "from",
      messages: null,
      bytes: t.bytes,
      oldestAgeMs: null,
    }));
    return [...to.values(), ...from].sort((a, b) => b.bytes - a.bytes).slice(0, MAX_LISTED_DEVICES);
  }

  /** The newest dead letters (reason and origin, never the body). */
  async #deadLetters(head: number, tail: number): Promise<DeadLetter[]> {
    const from = Math.max(head, tail - RECENT_DEAD_LETTERS);
    let read: Awaited<ReturnType<MessageStore["read"]>>;
    try {
      read = await this.#sources.store.read(DEAD_LETTER_QUEUE, { from, limit: RECENT_DEAD_LETTERS });
    } catch {
      return [];
    }
    return read.reverse().map((m) => ({
      offset: m.offset,
      at: new Date(m.enqueuedAt).toISOString(),
      queue: m.properties["$.dlq"] ?? "",
      reason: (m.properties["$.dlr"] ?? "").slice(0, MAX_REASON),
      bodyBytes: m.body.length,
    }));
  }
}
