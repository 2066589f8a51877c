/**
 * Persistent MQTT sessions: for clients that connect with clean session = false, the
 * subscriptions they were granted are kept in the store's KV (namespace `sessions`) and
 * restored on their next connection, across hub restarts, with CONNACK's session-present
 * flag set. A clean-session connect forgets them.
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

  clear(clientId: string): Promise<void> {
    return this.#store.kv.delete(NS, clientId);
  }
}
