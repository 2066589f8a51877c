/**
 * C2D messages whose sender asked for negative feedback (`iothub-ack` negative or full) and
 * that no device has settled yet: the ones that owe an `Expired` record if their TTL passes
 * first, or a `Purged` one if the device's queue is purged (IoT Hub's `FeedbackStatusCode`;
 * Microsoft.Azure.Devices `Message.Ack`: negative is "expired, or the maximum delivery count
 * reached, without being completed"). The store removes an expired message without a word,
 * so the hub keeps its own list: one KV entry per such message (namespace `c2d-feedback`,
 * key `{queue}#{offset}`), written when it is queued and deleted when it is settled, so a
 * restart keeps the list; a timer at the earliest expiry checks the message is gone from
 * its queue and hands the record over. At most {@link MAX_PENDING} are watched; past that
 * a message gets no negative feedback, and that is logged.
 */
import type { Logger } from "../../log.js";
import type { MessageStore } from "../../store/index.js";

/** The KV namespace of the watched messages. */
export const PENDING_NS = "c2d-feedback";
/** Messages watched at most. */
export const MAX_PENDING = 10_000;
/** A due message still in its queue (the store's clock ran behind ours) is looked at again after this. */
const RECHECK_MS = 1000;

/** A watched message. */
export interface PendingMessage {
  deviceId: string;
  queue: string;
  offset: number;
  /** `$.mid`, the feedback record's `originalMessageId`. */
  messageId: string;
  /** When its TTL passes (ms since the epoch). */
  expiresAt: number;
}

/** What a watched message ended as without a device settling it. */
export type Unsettled = "Expired" | "Purged";

function keyOf(queue: string, offset: number): string {
  return `${queue}#${String(offset).padStart(16, "0")}`;
}

/** Reads a stored entry; undefined for one this version does not understand. */
function parse(value: Buffer): PendingMessage | undefined {
  try {
    const p = JSON.parse(value.toString("utf8")) as Partial<PendingMessage>;
    if (
      typeof p.deviceId === "string" &&
      typeof p.queue === "string" &&
      Number.isSafeInteger(p.offset) &&
      typeof p.messageId === "string" &&
      typeof p.expiresAt === "number"
    )
      return p as PendingMessage;
  } catch {
    // Skipped below.
  }
  return undefined;
}

/** The watched messages of a root hub, and the timer of the next expiry. */
export class PendingFeedback {
  readonly #store: MessageStore;
  readonly #log: Logger;
  readonly #unsettled: (p: PendingMessage, status: Unsettled) => void;
  readonly #pending = new Map<string, PendingMessage>();
  /** The KV write of an entry, while under way: its delete waits for it. */
  readonly #writing = new Map<string, Promise<void>>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #checking = false;
  #closed = false;

  /** @param unsettled told of a watched message that expired or was purged (its record to write). */
  constructor(store: MessageStore, log: Logger, unsettled: (p: PendingMessage, status: Unsettled) => void) {
    this.#store = store;
    this.#log = log;
    this.#unsettled = unsettled;
  }

  /** Messages watched now. */
  get size(): number {
    return this.#pending.size;
  }

  /** Reads the list kept from before a restart; those past their expiry are told at once. */
  async load(): Promise<void> {
    for (const { key, value } of await this.#store.kv.scan(PENDING_NS)) {
      const p = parse(value);
      if (p && this.#pending.size < MAX_PENDING) this.#pending.set(key, p);
      else void this.#store.kv.delete(PENDING_NS, key).catch(() => undefined);
    }
    this.#arm();
  }

  /**
   * A C2D message asking for negative feedback was stored at `offset` of `queue`; resolves
   * once its entry is written (or failed to be, which is logged: it then gets no record).
   */
  watch(p: PendingMessage): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#pending.size >= MAX_PENDING) {
      this.#log.log("warn", "feedback-not-watched", { deviceId: p.deviceId, watched: this.#pending.size });
      return Promise.resolve();
    }
    const key = keyOf(p.queue, p.offset);
    this.#pending.set(key, p);
    const write = this.#store.kv.put(PENDING_NS, key, JSON.stringify(p)).then(
      () => undefined,
      (err: unknown) =>
        this.#log.log("warn", "feedback-not-watched", {
          deviceId: p.deviceId,
          reason: (err as Error).message,
        }),
    );
    this.#writing.set(key, write);
    void write.then(() => {
      if (this.#writing.get(key) === write) this.#writing.delete(key);
    });
    // Only an earlier expiry moves the timer: no walk of the whole list per send.
    if (!this.#closed && !this.#checking && p.expiresAt < this.#timerAt) this.#setTimer(p.expiresAt);
    return write;
  }

  /** A device settled the message at `offset` of `queue` (or it was dead-lettered): no longer watched. */
  settled(queue: string, offset: number): void {
    const key = keyOf(queue, offset);
    if (this.#pending.delete(key)) this.#forget(key);
  }

  /** The device's queues were purged (`purged`) or it was deleted: its watched messages end. */
  removed(deviceId: string, why: "purged" | "deleted"): void {
    for (const [key, p] of this.#pending) {
      if (p.deviceId !== deviceId) continue;
      this.#pending.delete(key);
      this.#forget(key);
      if (why === "purged") this.#unsettled(p, "Purged");
    }
  }

  /** Stops the timer; the list stays in the store for the next start. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #forget(key: string): void {
    const deleted = (this.#writing.get(key) ?? Promise.resolve()).then(() =>
      this.#store.kv.delete(PENDING_NS, key),
    );
    deleted.catch((err: unknown) =>
      this.#log.log("warn", "feedback-watch-not-deleted", { key, reason: (err as Error).message }),
    );
  }

  /** Sets the timer to the earliest expiry (if it is not set to that already). */
  #arm(): void {
    if (this.#closed || this.#checking) return;
    let next = Number.POSITIVE_INFINITY;
    for (const p of this.#pending.values()) if (p.expiresAt < next) next = p.expiresAt;
    if (next !== this.#timerAt) this.#setTimer(next);
  }

  /** The timer at `next` (ms since the epoch; never: none). */
  #setTimer(next: number): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = next;
    if (next === Number.POSITIVE_INFINITY) return;
    // Within setTimeout's range (C2D TTLs are at most two days, so never past it in practice).
    this.#timer = setTimeout(() => this.#expire(), Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1));
  }

  /** Tells every watched message past its expiry and gone from its queue; the rest wait. */
  async #expire(): Promise<void> {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    this.#checking = true;
    try {
      const now = Date.now();
      for (const [key, p] of [...this.#pending]) {
        if (p.expiresAt > now) continue;
        // The store expires it by its own clock: still readable means not yet, looked at again soon.
        const [first] = await this.#store.read(p.queue, { from: p.offset, limit: 1 });
        if (this.#closed) return;
        // Settled while this looked (the device completed it): no record.
        if (this.#pending.get(key) !== p) continue;
        if (first?.offset === p.offset) {
          this.#pending.set(key, { ...p, expiresAt: now + RECHECK_MS });
          continue;
        }
        this.#pending.delete(key);
        this.#forget(key);
        this.#unsettled(p, "Expired");
      }
    } catch (err) {
      // The store closed (the hub is stopping), or a read failed: looked at again later.
      if (this.#closed) return;
      this.#log.log("warn", "feedback-expiry-check-failed", { reason: (err as Error).message });
      const retry = Date.now() + RECHECK_MS;
      for (const [key, p] of this.#pending)
        if (p.expiresAt < retry) this.#pending.set(key, { ...p, expiresAt: retry });
    } finally {
      this.#checking = false;
    }
    this.#arm();
  }
}
