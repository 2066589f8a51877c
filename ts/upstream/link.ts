/**
 * One MQTT connection to the parent that keeps itself up ({@link MqttClient} per
 * attempt). This module decides when to retry (jittered exponential backoff, capped low)
 * and `wake()` retries at once, so the link returns as soon as the parent does. A publish resolves on its PUBACK and rejects
 * if the connection ends first; the forwarder resends in order.
 *
 * States: idle --start--> connecting --CONNACK 0--> up --close--> waiting --timer|wake--> connecting.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../log.js";
import { type ClientOptions, MqttClient } from "./mqtt-client.js";

/** What a link connects with; called before every attempt (tokens are made fresh). */
export type ConnectOptions = () => Omit<ClientOptions, "keepaliveSecs">;

/** First retry delay; doubles per failed attempt up to the link's cap. */
const FIRST_BACKOFF_MS = 100;

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
  /** Topic filters subscribed on every connection before `up` (QoS 0); see {@link Link.listenTo}. */
  readonly #subscriptions: Set<string>;
  /** Called once a filter added by {@link Link.listenTo} is acknowledged by the parent, by filter (one each). */
  readonly #whenSubscribed = new Map<string, () => void>();

  constructor(
    name: string,
    options: ConnectOptions,
    timing: LinkTiming,
    log: Logger,
    subscriptions: string[] = [],
  ) {
    super();
    this.name = name;
    this.#subscriptions = new Set(subscriptions);
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
    clearTimeout(this.#timer);
  }

  /** Retries now if the link is waiting out a backoff or suspended (the parent is known to be back). */
  wake(): void {
    this.#suspended = false;
    if (this.#closed || !this.#started || this.#client !== undefined) return;
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
   * Subscribes `filter` from now on: on the live connection at once and on every later one.
   * A connection not yet acknowledged takes it with the others when it is. `subscribed` is
   * called once the parent acknowledged it (what it sent before is not coming).
   */
  listenTo(filter: string, subscribed?: () => void): void {
    if (subscribed) this.#whenSubscribed.set(filter, subscribed);
    else this.#whenSubscribed.delete(filter);
    if (this.#subscriptions.has(filter)) return;
    this.#subscriptions.add(filter);
    this.#resubscribe("subscribe", filter);
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
    client[op]([filter], (err) => {
      if (this.#client !== client) return;
      // Not fatal to the link (its lane goes on); the next connection subscribes what is wanted then.
      if (err)
        this.#log.log("warn", `upstream-${op}-failed`, { link: this.name, filter, reason: err.message });
      else if (op === "subscribe" && this.#up) {
        const subscribed = this.#whenSubscribed.get(filter);
        this.#whenSubscribed.delete(filter);
        subscribed?.();
      }
    });
  }

  /** Closes for good. */
  close(): void {
    this.#closed = true;
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

  #connect(): void {
    let options: ReturnType<ConnectOptions>;
    try {
      options = this.#options();
    } catch (err) {
      this.#log.log("error", "upstream-link-options", { link: this.name, reason: (err as Error).message });
      this.#retry();
      return;
    }
    const client = new MqttClient({ ...options, keepaliveSecs: this.#timing.keepaliveSecs });
    this.#client = client;
    this.#pending = [];
    client.on("connect", () => {
      if (this.#client !== client) return;
      this.#attempts = 0;
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
      if (this.#subscriptions.size === 0) up();
      else
        client.subscribe([...this.#subscriptions], (err) => {
          if (err)
            this.#log.log("warn", "upstream-subscribe-failed", { link: this.name, reason: err.message });
          else up();
        });
    });
    client.on("message", (topic, payload) => {
      if (this.#client === client) this.emit("message", topic, payload);
    });
    client.on("refused", (code) => this.emit("refused", code));
    client.on("close", (reason) => {
      if (this.#client !== client) return;
      this.#client = undefined;
      clearInterval(this.#watchdog);
      if (this.#up) this.#log.log("warn", "upstream-link-down", { link: this.name, reason });
      this.#setDown(reason);
      this.#retry();
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

  #retry(): void {
    if (this.#closed || this.#suspended) return;
    const cap = Math.min(this.#timing.maxBackoffMs, FIRST_BACKOFF_MS * 2 ** this.#attempts);
    this.#attempts = Math.min(this.#attempts + 1, 30);
    // Jitter: thousands of links must not all come back in the same millisecond.
    this.#timer = setTimeout(() => this.#connect(), cap * (0.5 + Math.random() * 0.5));
    this.#timer.unref();
  }
}
