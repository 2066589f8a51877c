/**
 * Following stored queues read-only: a cursor per queue, batches read from it, and a wait
 * that a store notification (or the reader itself: its client went, gave credit) ends. What
 * `edgehub monitor`'s stream (./events.ts) and the Event Hubs–compatible endpoint's readers
 * (../amqp/event-hub/) both read with; reading never acknowledges, so no reader changes what
 * another sees.
 */
import type { MessageStore, StoredMessage } from "../store/index.js";

/** Where readers read from and learn of new messages. */
export interface EventFeed {
  store: MessageStore;
  /** The queues a stream follows: a root's events queue, an edge hub's upstream queues. */
  followedQueues: readonly string[];
  /** Calls back whenever new device-to-cloud messages were stored; returns an unsubscribe. */
  onStored(listener: () => void): () => void;
}

/** Per followed queue, the next offset to read. */
export type Cursor = Map<string, number>;

/** One queue's messages from one read. */
export interface FollowedBatch {
  queue: string;
  messages: StoredMessage[];
}

/** A reader of some queues from a cursor; {@link Follower.close} it when done. */
export class Follower {
  /** The next offset to read, per queue: advanced past each batch {@link Follower.next} returns. */
  readonly cursor: Cursor;
  readonly #store: MessageStore;
  readonly #unsubscribe: () => void;
  /** A signal came since the last {@link Follower.next} began or the last wait took it. */
  #signalled = false;
  #waiter: (() => void) | undefined;

  constructor(feed: Pick<EventFeed, "store" | "onStored">, cursor: Cursor) {
    this.#store = feed.store;
    this.cursor = cursor;
    this.#unsubscribe = feed.onStored(() => this.wake());
  }

  /**
   * Up to `limit` messages of each queue of the cursor from where it stands (`maxBytes`: of
   * bodies and properties, one message always fits); only queues with messages are returned.
   * A notification during the read is kept: the next {@link Follower.wait} returns at once.
   */
  async next(limit: number, maxBytes?: number): Promise<FollowedBatch[]> {
    this.#signalled = false;
    const out: FollowedBatch[] = [];
    for (const [queue, from] of this.cursor) {
      const messages = await this.#store.read(queue, { from, limit, ...(maxBytes ? { maxBytes } : {}) });
      if (messages.length === 0) continue;
      this.cursor.set(queue, (messages.at(-1) as StoredMessage).offset + 1);
      out.push({ queue, messages });
    }
    return out;
  }

  /** Resolves true at a signal (one already come counts), false after `ms`. */
  wait(ms: number): Promise<boolean> {
    if (this.#signalled) {
      this.#signalled = false;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        resolve(false);
      }, ms);
      this.#waiter = () => {
        clearTimeout(timer);
        this.#waiter = undefined;
        this.#signalled = false;
        resolve(true);
      };
    });
  }

  /** Ends a wait (or the next one): something was stored, or the reader's state changed. */
  wake(): void {
    this.#signalled = true;
    this.#waiter?.();
  }

  /** Stops listening to the store; a wait under way ends. */
  close(): void {
    this.#unsubscribe();
    this.wake();
  }
}
