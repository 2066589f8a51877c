/**
 * Persistent MQTT sessions: for clients that connect with clean session = false, the
 * subscriptions they were granted are kept in the store's KV (namespace `sessions`) and
 * restored on their next connection, across hub restarts, with CONNACK's session-present
 * flag set. A clean-session connect forgets them.
 *
 * Writes are bounded per connection ({@link SessionWriter}): at most one in flight and one
 * queued, none when the set is unchanged, so a reconnect storm of SDK clients subscribing
 * again to what they had costs reads, not fsyncs.
 */
import type { MessageStore } from "../store/index.js";
import type { SubscribeTopic } from "./topics.js";

const NS = "sessions";
type Kind = SubscribeTopic["kind"];

export class Sessions {
  readonly #store: MessageStore;

  constructor(store: MessageStore) {
    this.#store = store;
  }

  /** The subscriptions kept for `clientId`, or undefined when it has no session. */
  async load(clientId: string): Promise<Kind[] | undefined> {
    const raw = await this.#store.kv.get(NS, clientId);
    return raw ? (JSON.parse(raw.toString("utf8")) as Kind[]) : undefined;
  }

  save(clientId: string, kinds: Iterable<Kind>): Promise<void> {
    return this.#store.kv.put(NS, clientId, JSON.stringify([...kinds]));
  }

  /** Forgets the session of `clientId`; only a read when it has none (most clean-session connects). */
  async clear(clientId: string): Promise<void> {
    if ((await this.#store.kv.get(NS, clientId)) === null) return;
    await this.#store.kv.delete(NS, clientId);
  }
}

/** The stored subscriptions of one clean=false connection, written as they change. */
export class SessionWriter {
  readonly #sessions: Sessions;
  readonly #clientId: string;
  /** The set as stored (sorted JSON). */
  #stored: string | undefined;
  /** The write waiting behind the one in flight; it stores the set as it is when it starts. */
  #queued: Promise<void> | undefined;
  /** The last write started or queued, until it settles. */
  #inFlight: Promise<void> | undefined;

  /** @param stored what the session held when the connection restored it. */
  constructor(sessions: Sessions, clientId: string, stored: Kind[] | undefined) {
    this.#sessions = sessions;
    this.#clientId = clientId;
    this.#stored = stored === undefined ? undefined : JSON.stringify([...stored].sort());
  }

  /**
   * Stores `current` (read when the write starts, so one write covers every change made
   * while the previous one was in flight). Undefined when there is nothing to wait for:
   * the set is stored already and no write is pending.
   */
  save(current: ReadonlySet<Kind>): Promise<void> | undefined {
    if (this.#queued) return this.#queued;
    if (!this.#inFlight && JSON.stringify([...current].sort()) === this.#stored) return undefined;
    const save = (this.#inFlight ?? Promise.resolve()).then(async () => {
      this.#queued = undefined;
      const kinds = [...current].sort();
      const json = JSON.stringify(kinds);
      if (json === this.#stored) return;
      await this.#sessions.save(this.#clientId, kinds);
      this.#stored = json;
    });
    this.#queued = save;
    this.#inFlight = save;
    save
      .finally(() => {
        if (this.#inFlight === save) this.#inFlight = undefined;
      })
      .catch(() => undefined);
    return save;
  }
}
