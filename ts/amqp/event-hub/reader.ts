/**
 * One Event Hubs reader: the client's receiver on
 * `{hub}/ConsumerGroups/{group}/Partitions/0`, our sender. It reads the events queue
 * read-only from where its filter says (./position.ts) with the monitor stream's
 * follower (../../service/follower.ts), sends no more than the client's credit, waits while
 * the connection's socket has a backlog, and follows new events as they are stored. Events
 * are sent settled: where a consumer is in the stream is its own checkpoint, as on Event Hubs.
 */
import rhea, { type Sender } from "rhea";
import type { Logger } from "../../log.js";
import { Follower } from "../../service/follower.js";
import type { MessageStore, StoredMessage } from "../../store/index.js";
import { eventToAmqp } from "../message.js";
import type { EventHub } from "./event-hub.js";
import type { StartPosition } from "./position.js";

/** Events read at once at most (fewer when the credit is lower). */
const BATCH = 64;
/** Bytes of events read at once at most (one event always fits). */
const BATCH_BYTES = 1024 * 1024;
/** A reader with nothing to do looks again this often even without a signal. */
const IDLE_MS = 30_000;

/** What a reader needs from its connection. */
export interface ReaderHost {
  readonly closed: boolean;
  /** Resolves once what the client has not read of the socket is under the connection's bound. */
  drained(): Promise<void>;
  readonly ctx: { log: Logger };
}

/**
 * The first offset of `queue` whose event was enqueued after `afterMs` (at it when
 * `inclusive`): a binary search over the live offsets (enqueued times grow with offsets).
 */
export async function firstAfter(
  store: MessageStore,
  queue: string,
  afterMs: number,
  inclusive: boolean,
): Promise<number> {
  const q = store.queueNow(queue);
  if (!q) return 0;
  let lo = q.head;
  let hi = q.tail;
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    const [m] = await store.read(queue, { from: mid, limit: 1, maxBytes: 1 });
    if (!m || (inclusive ? m.enqueuedAt >= afterMs : m.enqueuedAt > afterMs)) hi = mid;
    else lo = m.offset + 1;
  }
  return lo;
}

/** The capability a receiver asks for to get the partition's last event with each event (`trackLastEnqueuedEventProperties`). */
export const RUNTIME_METRIC = "com.microsoft:enable-receiver-runtime-metric";

/** Sends one partition's events to one client receiver. */
export class PartitionReader {
  readonly #host: ReaderHost;
  readonly #sender: Sender;
  readonly #hub: EventHub;
  #follower: Follower | undefined;
  #open = true;
  /** Each event carries the partition's last event in its delivery annotations. */
  readonly #runtimeMetric: boolean;

  constructor(host: ReaderHost, sender: Sender, hub: EventHub, start: StartPosition, runtimeMetric = false) {
    this.#host = host;
    this.#sender = sender;
    this.#hub = hub;
    this.#runtimeMetric = runtimeMetric;
    sender.on("sendable", () => this.#follower?.wake());
    void this.#run(start);
  }

  /** The first offset to read. */
  async #startOffset(start: StartPosition): Promise<number> {
    const { store } = this.#hub.feed;
    const queue = this.#hub.queue;
    if (start.kind === "offset") return start.offset;
    if (start.kind === "latest") return store.queueNow(queue)?.tail ?? 0;
    return firstAfter(store, queue, start.afterMs, start.inclusive);
  }

  async #run(start: StartPosition): Promise<void> {
    const queue = this.#hub.queue;
    // Enqueued times grow with offsets: a clock stepped back is filtered as the filter says.
    const before = (m: StoredMessage) =>
      start.kind === "time" &&
      (start.inclusive ? m.enqueuedAt < start.afterMs : m.enqueuedAt <= start.afterMs);
    try {
      const from = await this.#startOffset(start);
      if (!this.#open) return;
      const follower = new Follower(this.#hub.feed, new Map([[queue, from]]));
      this.#follower = follower;
      while (this.#open) {
        const credit = (this.#sender as unknown as { credit: number }).credit;
        if (!this.#sender.sendable()) {
          await follower.wait(IDLE_MS);
          continue;
        }
        await this.#host.drained();
        if (!this.#open) break;
        const [batch] = await follower.next(Math.min(credit, BATCH), BATCH_BYTES);
        if (!batch) {
          await follower.wait(IDLE_MS);
          continue;
        }
        const annotations = this.#runtimeMetric ? await this.#lastEnqueued(batch.messages.at(-1)) : undefined;
        for (const m of batch.messages) {
          if (!this.#open) return;
          // Credit only grows while we read, unless the client drained it: the rest is read again.
          if (!this.#sender.sendable()) {
            follower.cursor.set(queue, m.offset);
            break;
          }
          if (before(m)) continue;
          const event = eventToAmqp(m);
          if (annotations) event.delivery_annotations = annotations;
          this.#sender.send(event);
        }
      }
    } catch (err) {
      if (!this.#open || this.#host.closed) return;
      this.#host.ctx.log.log("warn", "event-hub-read-failed", { reason: (err as Error).message });
      if (!this.#sender.is_closed())
        this.#sender.close({ condition: "amqp:internal-error", description: "the events could not be read" });
    }
  }

  /** The partition's last event, as Event Hubs gives it to a receiver that asked (@azure/event-hubs `fromRheaMessage`). */
  async #lastEnqueued(known: StoredMessage | undefined): Promise<Record<string, unknown>> {
    const { tail, last } = await this.#hub.ends(known);
    return {
      last_enqueued_sequence_number: rhea.types.wrap_long(tail - 1),
      last_enqueued_offset: String(tail - 1),
      last_enqueued_time_utc: new Date(last?.enqueuedAt ?? 0),
      runtime_info_retrieval_time_utc: new Date(),
    };
  }

  /** The link went: reading stops. */
  close(): void {
    if (!this.#open) return;
    this.#open = false;
    this.#follower?.close();
  }
}
