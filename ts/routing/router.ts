/**
 * The router: where a device's message goes. Until routes exist every telemetry message
 * goes to one queue (`$upstream` on an edge hub, the built-in events queue on a root).
 * Appends made in one event-loop turn, from every connection, go to the store as one
 * call, so they share one group commit.
 */
import { EventEmitter } from "node:events";
import type { AppendMessage, MessageStore } from "../store/index.js";
import { RecentIds } from "./recent-ids.js";

/** A device-to-cloud message as the protocol head hands it over. */
export interface Telemetry {
  deviceId: string;
  moduleId?: string;
  body: Buffer;
  /** Application properties and `$.`-prefixed system properties from the topic; handed over to
   * the router, which stamps the sender's identity into it. */
  properties: Record<string, string>;
  /** Forwarded by a child hub on the sender's behalf: a resend of a stored `$.mid` is not stored again. */
  forwarded?: boolean;
}

/** Called once a message is durable (`err` null) or was refused. */
export type Accepted = (err: unknown) => void;

/** Routes telemetry into the store; resolves once the message is durable. Emits `stored` (queue) after each batch. */
export class Router extends EventEmitter<{ stored: [queue: string] }> {
  readonly #store: MessageStore;
  readonly #queue: string;
  readonly #ttlSecs: number | undefined;
  #messages: AppendMessage[] = [];
  #callbacks: Accepted[] = [];
  readonly #recent = new RecentIds();

  /** @param ttlSecs time to live of what this router stores; the store's default if absent. */
  constructor(store: MessageStore, queue: string, ttlSecs?: number) {
    super();
    this.setMaxListeners(0);
    this.#store = store;
    this.#queue = queue;
    this.#ttlSecs = ttlSecs;
  }

  /**
   * Stores `t`, stamped with the identity that sent it; `done` is called once it is durable.
   * A callback, not a promise: this runs once per message on the ingest path.
   */
  accept(t: Telemetry, done: Accepted): void {
    const mid = t.forwarded ? t.properties["$.mid"] : undefined;
    if (mid !== undefined) {
      const sender = t.moduleId === undefined ? t.deviceId : `${t.deviceId}/${t.moduleId}`;
      if (this.#recent.has(sender, mid)) {
        done(null);
        return;
      }
      // Remembered once durable: a resend arriving before then is stored again (at least once).
      const inner = done;
      done = (err) => {
        if (!err) this.#recent.add(sender, mid);
        inner(err);
      };
    }
    // The connection's identity is the hub's to state: never taken from the client's bag.
    // The bag is this message's own object (parsed from its topic), so it is stamped in place.
    const properties = t.properties;
    properties["$.cdid"] = t.deviceId;
    if (t.moduleId !== undefined) properties["$.cmid"] = t.moduleId;
    else delete properties["$.cmid"];
    if (this.#messages.length === 0) setImmediate(() => this.#flush());
    this.#messages.push(
      this.#ttlSecs === undefined
        ? { body: t.body, properties }
        : { body: t.body, properties, ttlSecs: this.#ttlSecs },
    );
    this.#callbacks.push(done);
  }

  #flush(): void {
    const messages = this.#messages;
    const callbacks = this.#callbacks;
    this.#messages = [];
    this.#callbacks = [];
    this.#store.append(this.#queue, messages).then(
      () => {
        for (const done of callbacks) done(null);
        this.emit("stored", this.#queue);
      },
      (err: unknown) => {
        for (const done of callbacks) done(err);
      },
    );
  }
}
