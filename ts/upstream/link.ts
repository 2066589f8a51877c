/**
 * One MQTT connection to the parent that keeps itself up ({@link MqttClient} per
 * attempt). This module decides when to retry (jittered exponential backoff, capped low)
 * and `wake()` retries at once, so the link returns as soon as the parent does. A publish resolves on its PUBACK and rejects
 * if the connection ends first; the forwarder resends in order.
 *
 * States: idle --start--> connecting --CONNACK 0--> up --close--> waiting --timer|wake--> connecting.
 */
import { EventEmitter } from "node:events";
import net from "node:net";
import type { Logger } from "../log.js";
import { busyRefusal, type ClientOptions, type Inbound, MqttClient } from "./mqtt-client.js";

/** What a link connects with; called before every attempt (tokens are made fresh). */
export type ConnectOptions = () => Omit<ClientOptions, "keepaliveSecs" | "clean" | "deferAcks">;

/** How a link keeps its MQTT session with the parent. */
export interface LinkSession {
  /** Clean session false: the parent keeps the session (and what it did not get a PUBACK for). */
  persistent: boolean;
  /** Inbound QoS 1 topics PUBACKed only on {@link Inbound.complete} (see {@link MqttClient}). */
  deferAcks?: (topic: string) => boolean;
  /**
   * Filters the link may have left in the parent's session (an earlier process, a connection
   * that ended before its UNSUBSCRIBE): unsubscribed when the parent says a session is present
   * and the link does not want them now, so the parent sends nothing nobody here listens to.
   */
  optional?: () => string[];
}

/**
 * While the parent's port does not answer, the presence link knocks with a bare TCP connect
 * this often (no TLS, no MQTT: a SYN and a RST while it is away) and dials as soon as one is
 * accepted, so the first message goes up within about this long of the parent listening
 * again instead of after the rest of a backoff (up to `maxBackoffMs`).
 */
export const PROBE_EVERY_MS = 100;

/** First retry delay; doubles per failed attempt up to the link's cap. */
const FIRST_BACKOFF_MS = 100;
/**
 * Cap of the backoff while the parent answers CONNACK 3 (server unavailable): the C# device
 * SDK's default retry policy, 100 ms to 10 s (`DeviceClient.cs#SetRetryPolicy`), which
 * Microsoft's edge hub uses for its cloud connections. A busy parent is not hammered at
 * `maxBackoffMs`.
 */
export const BUSY_MAX_BACKOFF_MS = 10_000;

/**
 * Spreads the connects of many links over time: at most one per `intervalMs`, each at a
 * random point of its slot. After the parent returns, a thousand lanes reconnect over
 * seconds instead of in one burst that IoT Hub would throttle; a lone connect (a new lane
 * in steady state) waits for nothing.
 */
export class ConnectPacer {
  readonly intervalMs: number;
  /** Start of the next free slot (ms since the epoch). */
  #next = 0;

  constructor(intervalMs: number) {
    this.intervalMs = intervalMs;
  }

  /** Takes the next slot; how long to wait before connecting (0: now). */
  take(): number {
    const now = Date.now();
    if (this.#next <= now) {
      // Nothing queued: this one goes now and the next waits a slot.
      this.#next = now + this.intervalMs;
      return 0;
    }
    const start = this.#next;
    this.#next += this.intervalMs;
    return start - now + Math.random() * this.intervalMs;
  }
}

/** How a link retries and notices a dead connection. */
export interface LinkTiming {
  /** Longest wait between attempts (jittered). */
  maxBackoffMs: number;
  /** MQTT keepalive in seconds. */
  keepaliveSecs: number;
  /** Longest wait for a PUBACK before the connection is taken as dead (a black-holed route sends no RST). */
  ackTimeoutMs: number;
}

/** A connection to the parent that keeps itself up. */
export class Link extends EventEmitter<{
  up: [];
  down: [reason: string];
  refused: [code: number];
  message: [topic: string, payload: Buffer];
  /** A QoS 1 PUBLISH whose PUBACK waits for {@link Inbound.complete} (see {@link LinkSession.deferAcks}). */
  deferred: [topic: string, payload: Buffer, inbound: Inbound];
}> {
  readonly name: string;
  readonly #options: ConnectOptions;
  readonly #timing: LinkTiming;
  readonly #log: Logger;
  /** Send times of the publishes awaiting PUBACK on the current connection, oldest first. */
  #pending: number[] = [];
  #watchdog: NodeJS.Timeout | undefined;
  #client: MqttClient | undefined;
  #up = false;
  #attempts = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #started = false;
  /** Waiting for {@link Link.wake} instead of retrying on its own (the parent is known to be away). */
  #suspended = false;
  /** The presence link: always retries on its own, never suspended. */
  keepTrying = false;
  /** Topic filters subscribed on every connection before `up`, with their QoS; see {@link Link.listenTo}. */
  readonly #subscriptions: Map<string, 0 | 1>;
  readonly #session: LinkSession;
  /** Called once a filter added by {@link Link.listenTo} is acknowledged by the parent, by filter (one each). */
  readonly #whenSubscribed = new Map<string, () => void>();
  /** Shared with the other identity links of the uplink; absent for the hub's own links (they go first). */
  readonly #pacer: ConnectPacer | undefined;
  /** Waiting for a pacer slot: a wake does not take another. */
  #pacing = false;
  /** The last attempt was answered CONNACK 3: back off up to {@link BUSY_MAX_BACKOFF_MS}. */
  #busy = false;
  /** A deferred PUBLISH nobody took is unacknowledged on this connection (it holds back every later PUBACK). */
  #orphans = false;
  /** Where the last attempt went: what {@link PROBE_EVERY_MS} probes knock on. */
  #target: { host: string; port: number } | undefined;
  /** The probe in progress, or the wait before the next one. */
  #probe: net.Socket | undefined;
  #probeTimer: NodeJS.Timeout | undefined;
  /** When the backoff in progress ends (ms since the epoch). */
  #retryAt = 0;

  constructor(
    name: string,
    options: ConnectOptions,
    timing: LinkTiming,
    log: Logger,
    subscriptions: string[] = [],
    pacer?: ConnectPacer,
    session: LinkSession = { persistent: false },
  ) {
    super();
    this.name = name;
    this.#pacer = pacer;
    this.#session = session;
    this.#subscriptions = new Map(subscriptions.map((f) => [f, 0]));
    this.#options = options;
    this.#timing = timing;
    this.#log = log;
  }

  /** True while connected (CONNACK accepted and not closed since). */
  get up(): boolean {
    return this.#up;
  }

  /** Starts connecting; later failures retry on their own. */
  start(): void {
    if (this.#started || this.#closed) return;
    this.#started = true;
    this.#connect();
  }

  /**
   * The parent is unreachable (the presence link is down): stop retrying until
   * {@link Link.wake}, so a thousand lanes do not keep dialling a parent that is away.
   */
  suspend(): void {
    if (this.keepTrying || this.#closed) return;
    this.#suspended = true;
    this.#pacing = false;
    clearTimeout(this.#timer);
  }

  /** Retries now if the link is waiting out a backoff or suspended (the parent is known to be back). */
  wake(): void {
    this.#suspended = false;
    if (this.#closed || !this.#started || this.#client !== undefined || this.#pacing) return;
    clearTimeout(this.#timer);
    this.#attempts = 0;
    this.#connect();
  }

  /**
   * Publishes at QoS 1; `done` is called with null on its PUBACK, a `MessageRefused`
   * when the parent refused this message, or another error when the link went down first.
   * Publishes made in one turn of the event loop leave in one socket write (one TLS record).
   * A callback, not a promise: this runs once per forwarded message.
   */
  publish(
    topic: string,
    payload: Buffer,
    done: (err: Error | null) => void,
    userProperties?: Record<string, string>,
  ): void {
    const client = this.#client;
    if (!this.#up || !client) {
      done(new Error(`link ${this.name} is down`));
      return;
    }
    this.#pending.push(Date.now());
    client.publish(
      topic,
      payload,
      (err) => {
        // PUBACKs come in order on one connection: the oldest pending send is this one.
        if (this.#client === client) this.#pending.shift();
        done(err);
      },
      userProperties,
    );
  }

  /**
   * Subscribes `filter` at `qos` from now on: on the live connection at once and on every
   * later one. A connection not yet acknowledged takes it with the others when it is.
   * `subscribed` is called once the parent acknowledged it (what it sent before is not coming).
   */
  listenTo(filter: string, subscribed?: () => void, qos: 0 | 1 = 0): void {
    if (subscribed) this.#whenSubscribed.set(filter, subscribed);
    else this.#whenSubscribed.delete(filter);
    if (this.#subscriptions.get(filter) === qos) return;
    this.#subscriptions.set(filter, qos);
    // PUBACKs go in arrival order: one nobody took would hold back the new listener's. A new
    // connection gets it again (clean session false), with the filter.
    if (this.#orphans && this.listenerCount("deferred") > 0) {
      this.reconnect("redeliver messages nobody here had taken");
      return;
    }
    this.#resubscribe("subscribe", filter);
  }

  /** Ends the current connection (if any); the link connects again after its backoff. */
  reconnect(reason: string): void {
    this.#client?.destroy(reason);
  }

  /** Unsubscribes `filter`, on the live connection and on every later one. */
  stopListening(filter: string): void {
    this.#whenSubscribed.delete(filter);
    if (!this.#subscriptions.delete(filter)) return;
    this.#resubscribe("unsubscribe", filter);
  }

  #resubscribe(op: "subscribe" | "unsubscribe", filter: string): void {
    const client = this.#client;
    if (!client?.connected) return;
    const answered = (err: Error | null) => {
      if (this.#client !== client) return;
      // Not fatal to the link (its lane goes on); the next connection subscribes what is wanted then.
      if (err)
        this.#log.log("warn", `upstream-${op}-failed`, { link: this.name, filter, reason: err.message });
      else if (op === "subscribe" && this.#up) {
        const subscribed = this.#whenSubscribed.get(filter);
        this.#whenSubscribed.delete(filter);
        subscribed?.();
      }
    };
    if (op === "unsubscribe") client.unsubscribe([filter], answered);
    else client.subscribe([{ topic: filter, qos: this.#subscriptions.get(filter) ?? 0 }], answered);
  }

  /** Closes for good. */
  close(): void {
    this.#closed = true;
    this.#pacing = false;
    this.#stopProbing();
    clearTimeout(this.#timer);
    clearInterval(this.#watchdog);
    this.#client?.destroy("closed");
    this.#client = undefined;
    this.#setDown("closed");
  }

  #setDown(reason: string): void {
    if (!this.#up) return;
    this.#up = false;
    this.emit("down", reason);
  }

  /** Connects in the pacer's next slot (at once without a pacer). */
  #connect(): void {
    const wait = this.#pacer?.take() ?? 0;
    if (wait <= 0) {
      this.#dial();
      return;
    }
    this.#pacing = true;
    this.#timer = setTimeout(() => {
      this.#pacing = false;
      if (this.#closed) return;
      if (this.#suspended) return;
      this.#dial();
    }, wait);
    this.#timer.unref();
  }

  #dial(): void {
    this.#stopProbing();
    let options: ReturnType<ConnectOptions>;
    try {
      options = this.#options();
    } catch (err) {
      this.#log.log("error", "upstream-link-options", { link: this.name, reason: (err as Error).message });
      this.#retry();
      return;
    }
    this.#target = { host: options.host, port: options.port };
    const session = this.#session;
    const client = new MqttClient({
      ...options,
      keepaliveSecs: this.#timing.keepaliveSecs,
      clean: !session.persistent,
      ...(session.deferAcks ? { deferAcks: session.deferAcks } : {}),
    });
    this.#client = client;
    this.#pending = [];
    this.#orphans = false;
    client.on("connect", (sessionPresent) => {
      if (this.#client !== client) return;
      this.#attempts = 0;
      this.#busy = false;
      const up = () => {
        if (this.#client !== client) return;
        this.#up = true;
        this.#watch(client);
        this.#log.log("info", "upstream-link-up", { link: this.name });
        this.emit("up");
        const waiting = [...this.#whenSubscribed.values()];
        this.#whenSubscribed.clear();
        for (const subscribed of waiting) subscribed();
      };
      // A session kept from before may hold filters nobody here wants now: the parent would
      // deliver to no one (and, for methods, wait for an answer that never comes).
      const stale = sessionPresent
        ? (session.optional?.() ?? []).filter((f) => !this.#subscriptions.has(f))
        : [];
      if (stale.length > 0)
        client.unsubscribe(stale, (err) => {
          if (err)
            this.#log.log("warn", "upstream-unsubscribe-failed", { link: this.name, reason: err.message });
        });
      if (this.#subscriptions.size === 0) up();
      else
        client.subscribe(
          [...this.#subscriptions].map(([topic, qos]) => ({ topic, qos })),
          (err) => {
            if (err)
              this.#log.log("warn", "upstream-subscribe-failed", { link: this.name, reason: err.message });
            else up();
          },
        );
    });
    client.on("message", (topic, payload, inbound) => {
      if (this.#client !== client) return;
      if (!inbound) this.emit("message", topic, payload);
      // Nobody takes it (it came in a session kept from before, or just before an UNSUBSCRIBE):
      // it stays unacknowledged, and the next listener gets it again on a fresh connection.
      else if (!this.emit("deferred", topic, payload, inbound)) this.#orphans = true;
    });
    client.on("refused", (code) => {
      this.#busy = busyRefusal(code);
      this.emit("refused", code);
    });
    client.on("close", (reason) => {
      if (this.#client !== client) return;
      this.#client = undefined;
      clearInterval(this.#watchdog);
      if (this.#up) this.#log.log("warn", "upstream-link-down", { link: this.name, reason });
      this.#setDown(reason);
      this.#retry(!client.reached);
    });
  }

  /** Drops the connection when its oldest publish waited too long for a PUBACK. */
  #watch(client: MqttClient): void {
    clearInterval(this.#watchdog);
    const every = Math.max(100, Math.min(1000, this.#timing.ackTimeoutMs / 4));
    this.#watchdog = setInterval(() => {
      const oldest = this.#pending[0];
      if (oldest === undefined || Date.now() - oldest < this.#timing.ackTimeoutMs) return;
      this.#log.log("warn", "upstream-link-stalled", { link: this.name, waitedMs: Date.now() - oldest });
      client.destroy(`no PUBACK in ${this.#timing.ackTimeoutMs} ms`);
    }, every);
    this.#watchdog.unref();
  }

  /**
   * Waits out the backoff, then connects again. `unreachable`: the parent's port did not
   * answer; the presence link then also probes it ({@link PROBE_EVERY_MS}).
   */
  #retry(unreachable = false): void {
    if (this.#closed || this.#suspended) return;
    const ceiling = this.#busy
      ? Math.max(this.#timing.maxBackoffMs, BUSY_MAX_BACKOFF_MS)
      : this.#timing.maxBackoffMs;
    const cap = Math.min(ceiling, FIRST_BACKOFF_MS * 2 ** this.#attempts);
    this.#attempts = Math.min(this.#attempts + 1, 30);
    // Jitter: thousands of links must not all come back in the same millisecond.
    const wait = cap * (0.5 + Math.random() * 0.5);
    this.#retryAt = Date.now() + wait;
    this.#timer = setTimeout(() => this.#connect(), wait);
    this.#timer.unref();
    const probing = unreachable && this.keepTrying && wait > PROBE_EVERY_MS;
    this.#log.log("debug", "upstream-link-retry", { link: this.name, inMs: Math.round(wait), probing });
    if (probing) this.#knock();
  }

  /** One probe of the parent's port; an accepted one ends the backoff (see {@link PROBE_EVERY_MS}). */
  #knock(): void {
    const target = this.#target;
    if (target === undefined || this.#closed) return;
    const probe = net.connect({ host: target.host, port: target.port, timeout: 5 * PROBE_EVERY_MS });
    this.#probe = probe;
    const over = (answered: boolean) => {
      probe.destroy();
      if (this.#probe !== probe) return;
      this.#probe = undefined;
      if (answered) {
        clearTimeout(this.#timer);
        this.#log.log("info", "upstream-parent-answers", {
          link: this.name,
          backoffLeftMs: Math.max(0, Math.round(this.#retryAt - Date.now())),
        });
        this.#connect();
      } else {
        this.#probeTimer = setTimeout(() => this.#knock(), PROBE_EVERY_MS);
        this.#probeTimer.unref();
      }
    };
    probe.once("connect", () => over(true));
    probe.once("error", () => over(false));
    probe.once("timeout", () => over(false));
    probe.unref();
  }

  #stopProbing(): void {
    clearTimeout(this.#probeTimer);
    this.#probeTimer = undefined;
    const probe = this.#probe;
    this.#probe = undefined;
    probe?.destroy();
  }
}
