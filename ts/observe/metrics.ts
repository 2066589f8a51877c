/**
 * Prometheus metrics of one hub (prom-client, a registry per hub). Gauges and the
 * per-endpoint counters are read at scrape time from the store's in-memory figures, so
 * the message path pays nothing for them; the hot path only observes one commit latency
 * per store append (a batch, not a message) and counts refused logins.
 */
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { StoreStats } from "../store/index.js";
import { DEAD_LETTER_QUEUE } from "../vocabulary.js";

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

/** Per-label running sums a counter is advanced by. */
type Totals = Map<string, number>;

/** The metrics of one hub and their text exposition. */
export class HubMetrics {
  readonly registry = new Registry();
  readonly #sources: MetricsSources;
  readonly #labels = new Map<string, string>();
  readonly #commit: Histogram;
  readonly #authFailures: Counter<"transport" | "code">;
  /** The store's figures of the scrape under way; null: not read yet. */
  #scraped: StoreStats | undefined | null = null;

  constructor(sources: MetricsSources) {
    this.#sources = sources;
    const registers = [this.registry];
    const metrics = this;
    // Not prom-client's default metrics: they start observers per registry that are never
    // stopped (a leak with several hubs in one process); the hub measures what matters itself.
    this.#commit = new Histogram({
      name: "edgehub_store_commit_duration_seconds",
      help: "Time from a store append to its durable commit (group commit, WAL fsync), per append call",
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.#authFailures = new Counter({
      name: "edgehub_auth_failures_total",
      help: "Logins refused: MQTT (TLS and WebSocket) and service API calls answered 401/403, by transport and error code",
      labelNames: ["transport", "code"],
      registers,
    });
    const endpointCounter = (name: string, help: string, of: (q: StoreStats["queues"][number]) => number) => {
      const last: Totals = new Map();
      return new Counter({
        name,
        help,
        labelNames: ["endpoint"],
        registers,
        collect() {
          const s = metrics.#stats();
          if (!s) return;
          for (const [label, total] of metrics.#sum(s, of)) {
            const before = last.get(label);
            // First scrape: everything since the store was created; a sum that went down
            // (a queue removed) restarts from where it is.
            if (before === undefined || total >= before) this.inc({ endpoint: label }, total - (before ?? 0));
            last.set(label, total);
          }
        },
      });
    };
    endpointCounter(
      "edgehub_messages_in_total",
      "Messages stored into an endpoint's queue (since the store was created)",
      (q) => q.tail,
    );
    endpointCounter(
      "edgehub_messages_out_total",
      "Messages delivered from an endpoint's queue and acknowledged (since the store was created)",
      (q) => q.ackedUpTo + 1,
    );
    const endpointGauge = (name: string, help: string, of: (q: StoreStats["queues"][number]) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ["endpoint"],
        registers,
        collect() {
          this.reset();
          const s = metrics.#stats();
          if (s) for (const [label, v] of metrics.#sum(s, of)) this.set({ endpoint: label }, v);
        },
      });
    endpointGauge("edgehub_backlog_messages", "Messages waiting in an endpoint's queue", (q) => q.count);
    endpointGauge("edgehub_backlog_bytes", "Bytes waiting in an endpoint's queue", (q) => q.bytes);
    new Gauge({
      name: "edgehub_backlog_oldest_age_seconds",
      help: "Age of the oldest message waiting in an endpoint's queue",
      labelNames: ["endpoint"],
      registers,
      collect() {
        this.reset();
        const s = metrics.#stats();
        if (!s) return;
        const oldest = new Map<string, number>();
        for (const q of s.queues) {
          if (q.oldestAgeMs === null) continue;
          const label = metrics.#label(q.name);
          oldest.set(label, Math.max(oldest.get(label) ?? 0, q.oldestAgeMs / 1000));
        }
        for (const [label, v] of oldest) this.set({ endpoint: label }, v);
      },
    });
    const storeGauge = (name: string, help: string, of: (s: StoreStats) => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const s = metrics.#stats();
          if (s) this.set(of(s));
        },
      });
    storeGauge(
      "edgehub_store_bytes",
      "Live message bytes in the store (what the quota limits)",
      (s) => s.bytes,
    );
    storeGauge("edgehub_store_quota_bytes", "The store's quota (maxSizeBytes)", (s) => s.maxSizeBytes);
    const storeCounter = (name: string, help: string, of: (s: StoreStats) => number) => {
      let last = 0;
      return new Counter({
        name,
        help,
        registers,
        collect() {
          const s = metrics.#stats();
          if (!s) return;
          const v = of(s);
          if (v > last) this.inc(v - last);
          last = v;
        },
      });
    };
    storeCounter(
      "edgehub_store_expired_messages_total",
      "Messages removed because their TTL passed (since the store was created)",
      (s) => s.expired,
    );
    storeCounter(
      "edgehub_store_dropped_messages_total",
      "Messages evicted by whenFull drop-oldest (since the store was created)",
      (s) => s.dropped,
    );
    storeCounter(
      "edgehub_dead_letters_total",
      "Messages the parent refused, moved to $deadletter (since the store was created)",
      (s) => s.queues.find((q) => q.name === DEAD_LETTER_QUEUE)?.tail ?? 0,
    );
    new Gauge({
      name: "edgehub_connected_clients",
      help: "Devices and modules connected and authenticated now",
      registers,
      collect() {
        this.set(sources.connectedClients());
      },
    });
    new Gauge({
      name: "edgehub_open_connections",
      help: "Device-facing sockets open now (TLS and WebSocket), authenticated or not",
      registers,
      collect() {
        this.set(sources.openConnections());
      },
    });
    new Gauge({
      name: "edgehub_event_loop_delay_p99_seconds",
      help: "The event loop's delay, 99th percentile over the last 5 s window",
      registers,
      collect() {
        this.set(sources.eventLoopDelayP99Ms() / 1000);
      },
    });
    new Gauge({
      name: "edgehub_process_resident_memory_bytes",
      help: "Resident memory of the hub's process",
      registers,
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    // A root has no parent: no series at all (an unlabelled gauge always shows a value).
    if (sources.linkUp() !== undefined)
      new Gauge({
        name: "edgehub_upstream_link_up",
        help: "1 while the link to the parent is up, 0 while down (absent on a root hub)",
        registers,
        collect() {
          this.set(sources.linkUp() ? 1 : 0);
        },
      });
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
    this.#authFailures.inc({ transport, code });
  }

  /** The text exposition and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.#scraped = null;
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
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
  #sum(s: StoreStats, of: (q: StoreStats["queues"][number]) => number): Totals {
    const out: Totals = new Map();
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
