/**
 * Prometheus metrics of one hub, written in the text format by ./exposition.ts. Gauges and
 * the per-endpoint counters are read at scrape time from the store's in-memory figures, so
 * the message path pays nothing for them; the hot path only observes one commit latency
 * per store append (a batch, not a message) and counts refused logins.
 */
import type { StoreStats } from "../store/index.js";
import { DEAD_LETTER_QUEUE } from "../vocabulary.js";
import { EXPOSITION_CONTENT_TYPE, expose, type Family, Histogram, type Sample } from "./exposition.js";

/** Endpoints (queues) with a label of their own at most; the rest are counted as `other`. */
export const MAX_ENDPOINT_LABELS = 100;
/** The label of queues past {@link MAX_ENDPOINT_LABELS}. */
export const OTHER_ENDPOINT = "other";

/** What the metrics read at scrape time. */
export interface MetricsSources {
  /** The store's figures; throws once the store is closed (the store metrics are then left out). */
  stats(): StoreStats;
  connectedClients(): number;
  openConnections(): number;
  /** The parent link: true up, false down, undefined on a root (no series; fixed for the hub's life). */
  linkUp(): boolean | undefined;
  /** The event loop's delay, 99th percentile over the hub's last window, in ms. */
  eventLoopDelayP99Ms(): number;
}

/** Where a refused login came in. */
export type AuthTransport = "mqtt" | "amqp" | "https";

/** A queue's figure that a metric reads. */
type QueueFigure = (q: StoreStats["queues"][number]) => number;

/**
 * A counter over a total the store keeps (since the store was created): the first scrape
 * counts everything; a total that went down (a queue removed) restarts from where it is, so
 * the counter never goes back.
 */
class Running {
  readonly #last = new Map<string, number>();
  readonly #value = new Map<string, number>();

  /** The counter of `key` once the store's total is `total`. */
  advance(key: string, total: number): number {
    const before = this.#last.get(key);
    const value =
      (this.#value.get(key) ?? 0) + (before === undefined || total >= before ? total - (before ?? 0) : 0);
    this.#last.set(key, total);
    this.#value.set(key, value);
    return value;
  }
}

const family = (name: string, type: Family["type"], help: string, samples: readonly Sample[]): Family => ({
  name,
  type,
  help,
  samples,
});

/** Bounds of the commit latency histogram, in seconds. */
const COMMIT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** The metrics of one hub and their text exposition. */
export class HubMetrics {
  readonly #sources: MetricsSources;
  readonly #labels = new Map<string, string>();
  readonly #commit = new Histogram(COMMIT_BUCKETS);
  /** Refused logins by `transport` then `code` (both from bounded sets). */
  readonly #authFailures = new Map<string, number>();
  readonly #in = new Running();
  readonly #out = new Running();
  readonly #store = new Running();
  /** The store's figures of the scrape under way; null: not read yet. */
  #scraped: StoreStats | undefined | null = null;

  constructor(sources: MetricsSources) {
    this.#sources = sources;
  }

  /** An append's commit took `seconds` (called once per append call, not per message). */
  committed(seconds: number): void {
    this.#commit.observe(seconds);
  }

  /**
   * A login was refused with `code` (an error code from ts/errors.ts: a bounded set) on
   * `transport`: `mqtt` (an MQTT CONNECT, over TLS or WebSocket) or `https` (a service API call).
   */
  authFailed(transport: AuthTransport, code: string): void {
    const key = `${transport}\n${code}`;
    this.#authFailures.set(key, (this.#authFailures.get(key) ?? 0) + 1);
  }

  /** The text exposition and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.#scraped = null;
    return { contentType: EXPOSITION_CONTENT_TYPE, body: expose(this.#families()) };
  }

  #families(): Family[] {
    const s = this.#stats();
    const sources = this.#sources;
    const perEndpoint = (of: QueueFigure, running?: Running): Sample[] =>
      s
        ? [...this.#sum(s, of)].map(([label, v]) => ({
            labels: [["endpoint", label]],
            value: running ? running.advance(label, v) : v,
          }))
        : [];
    const ofStore = (of: (s: StoreStats) => number, running?: Running, key = ""): Sample[] =>
      s ? [{ value: running ? running.advance(key, of(s)) : of(s) }] : [];
    const oldest = new Map<string, number>();
    for (const q of s?.queues ?? []) {
      if (q.oldestAgeMs === null) continue;
      const label = this.#label(q.name);
      oldest.set(label, Math.max(oldest.get(label) ?? 0, q.oldestAgeMs / 1000));
    }
    const linkUp = sources.linkUp();
    const families: Family[] = [
      family(
        "edgehub_store_commit_duration_seconds",
        "histogram",
        "Time from a store append to its durable commit (group commit, WAL fsync), per append call",
        this.#commit.samples(),
      ),
      family(
        "edgehub_auth_failures_total",
        "counter",
        "Logins refused: MQTT (TLS and WebSocket) and service API calls answered 401/403, by transport and error code",
        [...this.#authFailures].map(([key, value]) => {
          const [transport = "", code = ""] = key.split("\n");
          return {
            labels: [
              ["transport", transport],
              ["code", code],
            ],
            value,
          };
        }),
      ),
      family(
        "edgehub_messages_in_total",
        "counter",
        "Messages stored into an endpoint's queue (since the store was created)",
        perEndpoint((q) => q.tail, this.#in),
      ),
      family(
        "edgehub_messages_out_total",
        "counter",
        "Messages delivered from an endpoint's queue and acknowledged (since the store was created)",
        perEndpoint((q) => q.ackedUpTo + 1, this.#out),
      ),
      family(
        "edgehub_backlog_messages",
        "gauge",
        "Messages waiting in an endpoint's queue",
        perEndpoint((q) => q.count),
      ),
      family(
        "edgehub_backlog_bytes",
        "gauge",
        "Bytes waiting in an endpoint's queue",
        perEndpoint((q) => q.bytes),
      ),
      family(
        "edgehub_backlog_oldest_age_seconds",
        "gauge",
        "Age of the oldest message waiting in an endpoint's queue",
        [...oldest].map(([label, value]) => ({ labels: [["endpoint", label]], value })),
      ),
      family(
        "edgehub_store_bytes",
        "gauge",
        "Live message bytes in the store (what the quota limits)",
        ofStore((s) => s.bytes),
      ),
      family(
        "edgehub_store_quota_bytes",
        "gauge",
        "The store's quota (maxSizeBytes)",
        ofStore((s) => s.maxSizeBytes),
      ),
      family(
        "edgehub_store_expired_messages_total",
        "counter",
        "Messages removed because their TTL passed (since the store was created)",
        ofStore((s) => s.expired, this.#store, "expired"),
      ),
      family(
        "edgehub_store_dropped_messages_total",
        "counter",
        "Messages evicted by whenFull drop-oldest (since the store was created)",
        ofStore((s) => s.dropped, this.#store, "dropped"),
      ),
      family(
        "edgehub_dead_letters_total",
        "counter",
        "Messages the parent refused, moved to $deadletter (since the store was created)",
        ofStore(
          (s) => s.queues.find((q) => q.name === DEAD_LETTER_QUEUE)?.tail ?? 0,
          this.#store,
          "dead-letters",
        ),
      ),
      family("edgehub_connected_clients", "gauge", "Devices and modules connected and authenticated now", [
        { value: sources.connectedClients() },
      ]),
      family(
        "edgehub_open_connections",
        "gauge",
        "Device-facing sockets open now (TLS and WebSocket), authenticated or not",
        [{ value: sources.openConnections() }],
      ),
      family(
        "edgehub_event_loop_delay_p99_seconds",
        "gauge",
        "The event loop's delay, 99th percentile over the last 5 s window",
        [{ value: sources.eventLoopDelayP99Ms() / 1000 }],
      ),
      family("edgehub_process_resident_memory_bytes", "gauge", "Resident memory of the hub's process", [
        { value: process.memoryUsage.rss() },
      ]),
    ];
    // A root has no parent: no series at all (an unlabelled gauge always shows a value).
    if (linkUp !== undefined)
      families.push(
        family(
          "edgehub_upstream_link_up",
          "gauge",
          "1 while the link to the parent is up, 0 while down (absent on a root hub)",
          [{ value: linkUp ? 1 : 0 }],
        ),
      );
    return families;
  }

  /** The store's figures, read once per scrape (every collector of one scrape shares them). */
  #stats(): StoreStats | undefined {
    if (this.#scraped === null) {
      try {
        this.#scraped = this.#sources.stats();
      } catch {
        this.#scraped = undefined;
      }
    }
    return this.#scraped;
  }

  /** `of` summed per endpoint label. */
  #sum(s: StoreStats, of: QueueFigure): Map<string, number> {
    const out = new Map<string, number>();
    for (const q of s.queues) {
      const label = this.#label(q.name);
      out.set(label, (out.get(label) ?? 0) + of(q));
    }
    return out;
  }

  /** A queue's endpoint label: its name while fewer than {@link MAX_ENDPOINT_LABELS} are taken. */
  #label(queue: string): string {
    let label = this.#labels.get(queue);
    if (label !== undefined) return label;
    label = this.#labels.size < MAX_ENDPOINT_LABELS ? queue : OTHER_ENDPOINT;
    // Past the cap nothing is remembered: the map stays bounded whatever the queues.
    if (label !== OTHER_ENDPOINT) this.#labels.set(queue, label);
    return label;
  }
}
