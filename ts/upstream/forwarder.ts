/**
 * The forwarder: drains the `$upstream` queue to the parent, at least once, in stored
 * order per device. Reading, the window, the checkpoint and the store's acknowledgements
 * are the queue consumer's (../queue/consumer.ts); this adapter sends a message on the
 * link of its lane and says when the parent is done with it.
 *
 * Invariants:
 * - Messages are read in offset order and handed to the link of their lane (an identity on
 *   IoT Hub's protocol, where one connection carries one device; the one bridge link for a
 *   broker). A lane sends in offset order with up to `window` unacknowledged; after a
 *   link loss its unacknowledged messages go again first, in order.
 * - The queue is acknowledged (checkpointed) only up to the longest prefix, in read order,
 *   whose messages are all done: acknowledged by the parent, expired, or dead-lettered.
 *   So a crash resends at most what was read past the checkpoint, never loses anything.
 * - A lane that cannot send does not stop the others: reading runs ahead of the
 *   checkpoint up to `readAhead` messages and `readAheadBytes`.
 * - While the parent is unreachable ({@link Forwarder.pause}) nothing is read or held in
 *   memory: the backlog stays on disk, under the store's TTL and quota policy.
 * - An expired message is never sent. A message the parent refuses for good is moved to
 *   the dead-letter queue with its reason; nothing is dropped silently. "Later" is not
 *   "never": a busy parent (CONNACK 3) delays a lane, it never dead-letters it.
 * - A poison message (the parent ends the connection each time it is the oldest one
 *   unacknowledged) is dead-lettered after `POISON_TRIES` such drops in a row
 *   (./poison.ts), so its lane moves on instead of resending it forever.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../log.js";
import { type Clock, systemClock } from "../queue/clock.js";
import { QueueConsumer, type Source } from "../queue/consumer.js";
import type { MessageStore, StoredMessage } from "../store/index.js";
import { DEAD_LETTER, DEAD_LETTER_QUEUE } from "../vocabulary.js";
import { Lane } from "./lane.js";
import { ConnectionLost, MessageRefused } from "./mqtt-client.js";
import { POISON_TRIES, PoisonStrikes } from "./poison.js";
import type { RateLimit } from "./rate-limit.js";
import type { Uplink } from "./uplink.js";

/** Tuning of a forwarder. */
export interface ForwarderOptions {
  /** Unacknowledged messages per lane. */
  window: number;
  /** Messages read past the checkpoint at most. Default 20 × window, at least 4000. */
  readAhead?: number;
  /** Bytes of messages read past the checkpoint at most. Default 16 MiB. */
  readAheadBytes?: number;
  /** Cap on messages sent per second, shared with the other forwarders of the upstream. */
  rate?: RateLimit;
  /** Reads only while this says so (a lower-priority queue waits for the higher ones). */
  mayRead?: () => boolean;
  /** `"stored"` (default) or `"live-first"`: after a return, new messages go before the backlog. */
  order?: "stored" | "live-first";
  /** Lanes idle this long have their link closed. Default 60 s. */
  idleLinkMs?: number;
  /** Time (tests inject their own). */
  clock?: Clock;
}

/** Counters since start. */
export interface ForwarderStats {
  sent: number;
  acked: number;
  /** Sends that failed because a link went down (resent later). */
  retried: number;
  expired: number;
  deadLettered: number;
  lanes: number;
  /** Messages read and not yet done. */
  outstanding: number;
}

const READ_BATCH = 500;

/** Counters at zero. */
export function zeroStats(): ForwarderStats {
  return { sent: 0, acked: 0, retried: 0, expired: 0, deadLettered: 0, lanes: 0, outstanding: 0 };
}

/** Drains one queue to the parent. */
export class Forwarder extends EventEmitter<{ drained: []; checkpoint: [offset: number] }> {
  readonly #store: MessageStore;
  readonly #queue: string;
  /** The queue this forwarder drains. */
  get queue(): string {
    return this.#queue;
  }
  readonly #uplink: Uplink;
  readonly #log: Logger;
  readonly #window: number;
  readonly #idleLinkMs: number;
  readonly #liveFirst: boolean;
  readonly #clock: Clock;
  readonly #lanes = new Map<string, Lane>();
  readonly #consumer: QueueConsumer;
  /** The queue's source in the consumer (set by {@link Forwarder.start}). */
  #source: Source | undefined;
  /** Bumped by every pause and resume, so a resume overtaken by a pause does nothing. */
  #transitions = 0;
  #paused = true;
  #closed = false;
  readonly #rate: RateLimit | undefined;
  /** Connections the parent ended while a message was its lane's oldest unacknowledged. */
  readonly #strikes = new PoisonStrikes();
  readonly stats: ForwarderStats = zeroStats();

  constructor(store: MessageStore, queue: string, uplink: Uplink, options: ForwarderOptions, log: Logger) {
    super();
    this.#store = store;
    this.#queue = queue;
    this.#uplink = uplink;
    this.#log = log;
    this.#window = options.window;
    this.#idleLinkMs = options.idleLinkMs ?? 60_000;
    this.#liveFirst = options.order === "live-first";
    this.#clock = options.clock ?? systemClock;
    this.#rate = options.rate;
    this.#rate?.onResume(() => {
      for (const lane of this.#lanes.values()) this.#pump(lane);
    });
    this.#consumer = new QueueConsumer(
      store,
      { deliver: (m) => this.#accept(m) },
      {
        window: options.readAhead ?? Math.max(4000, options.window * 20),
        windowBytes: options.readAheadBytes ?? 16 * 2 ** 20,
        readBatch: READ_BATCH,
        liveFirst: this.#liveFirst,
        ...(options.mayRead ? { mayRead: options.mayRead } : {}),
        clock: this.#clock,
        onCheckpoint: (_queue, upTo) => this.emit("checkpoint", upTo),
        onDrained: () => this.emit("drained"),
        onError: (what, q, err) =>
          this.#log.log("error", what === "read" ? "forwarder-read-failed" : "checkpoint-failed", {
            queue: q,
            reason: (err as Error).message,
          }),
      },
    );
  }

  /** Loads the checkpoint; draining starts on {@link Forwarder.resume}. */
  async start(): Promise<void> {
    const q = (await this.#store.stats()).queues.find((x) => x.name === this.#queue);
    this.#source = this.#consumer.add(this.#queue, q?.ackedUpTo ?? -1, 0);
  }

  /**
   * The parent is unreachable: stop reading and let go of what was read and not sent (it
   * stays stored). What the parent acknowledged meanwhile is remembered, so it is not sent again.
   */
  pause(): void {
    this.#transitions++;
    if (this.#paused) return;
    this.#paused = true;
    this.#consumer.pause(true);
    for (const lane of this.#lanes.values()) {
      lane.clear();
      lane.link.suspend();
    }
    this.stats.outstanding = 0;
  }

  /**
   * The parent is reachable: read again from the checkpoint. Live-first: what is stored
   * from now on goes before the backlog.
   */
  async resume(): Promise<void> {
    const transition = ++this.#transitions;
    let splitAt: number | undefined;
    if (this.#liveFirst && this.#paused) {
      const tail = (await this.#store.stats()).queues.find((x) => x.name === this.#queue)?.tail ?? 0;
      if (transition !== this.#transitions) return;
      splitAt = tail;
    }
    this.#paused = false;
    this.#consumer.resume(splitAt);
    const liveFrom = this.#consumer.liveFrom ?? Number.POSITIVE_INFINITY;
    // The parent is back: links waiting out a backoff or suspended try again (identity
    // links in their pacer's slots, spread after the hub's own).
    for (const lane of this.#lanes.values()) {
      lane.liveFrom = liveFrom;
      lane.link.wake();
    }
    this.wake();
  }

  /**
   * New messages were stored: read on and pump every lane (unless paused). Links are not
   * woken: one backing off from a busy parent keeps its backoff.
   */
  wake(): void {
    if (this.#paused) return;
    this.#consumer.stored(this.#queue);
    for (const lane of this.#lanes.values()) this.#pump(lane);
  }

  /** True when everything read is done and the last read found nothing more. */
  get idle(): boolean {
    return this.#consumer.idle;
  }

  /** Stops: closes every link. Messages not acknowledged stay stored for the next start. */
  close(): void {
    this.#closed = true;
    this.#consumer.close();
    this.#rate?.stop();
    for (const lane of [...this.#lanes.values()]) this.#closeLane(lane);
  }

  /** The consumer hands over a message read (in the current epoch: lanes are cleared on a pause). */
  #accept(m: StoredMessage): void {
    this.stats.outstanding = this.#consumer.outstanding;
    const refusal = this.#uplink.unsendable(m, this.#queue);
    if (refusal !== undefined) {
      this.#deadLetter([m], refusal);
      return;
    }
    const name = this.#uplink.laneOf(m);
    const lane = this.#lanes.get(name) ?? this.#openLane(name);
    lane.cancelIdle?.();
    lane.push(m);
    this.#pump(lane);
  }

  #openLane(name: string): Lane {
    const lane = new Lane(
      name,
      this.#uplink.linkFor(name),
      (l) => {
        l.refusals = 0;
        l.failing = false;
        this.#pump(l);
      },
      (l, code) => {
        // "Later", not "never": the link backs off (longer) and the messages wait.
        if (this.#uplink.transientRefusal(code)) return;
        if (!this.#uplink.refusedForGood(name, ++l.refusals)) return;
        l.refusals = 0;
        this.#deadLetter(l.takeAll(), `the parent refused the login of ${name} (CONNACK ${code})`);
      },
    );
    lane.liveFrom = this.#consumer.liveFrom ?? Number.POSITIVE_INFINITY;
    this.#lanes.set(name, lane);
    this.stats.lanes = this.#lanes.size;
    lane.link.on("up", lane.onUp);
    lane.link.on("refused", lane.onRefused);
    lane.link.start();
    return lane;
  }

  #closeLane(lane: Lane): void {
    lane.cancelIdle?.();
    lane.link.off("up", lane.onUp);
    lane.link.off("refused", lane.onRefused);
    this.#uplink.release(lane.name, lane.link);
    this.#lanes.delete(lane.name);
    this.stats.lanes = this.#lanes.size;
  }

  /** Sends what the lane's window allows. */
  #pump(lane: Lane): void {
    if (this.#closed) return;
    while (lane.link.up && lane.inflight < this.#window && lane.waiting > 0) {
      if (this.#rate && !this.#rate.take()) return;
      const m = lane.next() as StoredMessage;
      if (m.expiresAt !== null && m.expiresAt <= this.#clock.now()) {
        this.stats.expired++;
        this.#finish(m, this.#consumer.epoch);
        continue;
      }
      const wire = this.#uplink.wireFormOf(m, this.#queue);
      lane.inflight++;
      this.stats.sent++;
      const epoch = this.#consumer.epoch;
      lane.link.publish(
        wire.topic,
        wire.payload,
        (err) => {
          if (!err) {
            this.stats.acked++;
            if (epoch !== this.#consumer.epoch) {
              this.#finish(m, epoch);
              return;
            }
            lane.inflight--;
            this.#finish(m, epoch);
            this.#pump(lane);
            return;
          }
          if (epoch !== this.#consumer.epoch) return;
          lane.inflight--;
          if (err instanceof MessageRefused) {
            this.#deadLetter([m], err.message);
            this.#pump(lane);
            return;
          }
          this.stats.retried++;
          // The first failure of a drop is the oldest unacknowledged (they fail in send order).
          if (!lane.failing) {
            lane.failing = true;
            if (err instanceof ConnectionLost && err.byParent && this.#strikes.strike(m.offset)) {
              this.#deadLetter(
                [m],
                `the parent ended the connection ${POISON_TRIES} times in a row when this message was sent (last: ${err.message})`,
              );
              return;
            }
          }
          // The link is down: it pumps again when it comes back up.
          lane.putBack(m);
        },
        wire.userProperties,
      );
    }
    if (lane.inflight === 0 && lane.waiting === 0) this.#idleLater(lane);
  }

  #idleLater(lane: Lane): void {
    lane.cancelIdle?.();
    lane.cancelIdle = this.#clock.after(this.#idleLinkMs, () => {
      lane.cancelIdle = undefined;
      if (lane.inflight > 0 || lane.waiting > 0) return;
      this.#closeLane(lane);
    });
  }

  #deadLetter(messages: StoredMessage[], reason: string): void {
    if (messages.length === 0) return;
    this.#log.log("warn", "dead-lettered", { queue: this.#queue, count: messages.length, reason });
    const epoch = this.#consumer.epoch;
    this.#store
      .append(
        DEAD_LETTER_QUEUE,
        messages.map((m) => ({
          body: m.body,
          properties: {
            ...m.properties,
            [DEAD_LETTER.reason]: reason,
            [DEAD_LETTER.queue]: this.#queue,
            [DEAD_LETTER.offset]: String(m.offset),
          },
          ttlSecs: -1,
        })),
      )
      .then(
        () => {
          this.stats.deadLettered += messages.length;
          for (const m of messages) this.#finish(m, epoch);
        },
        (err: unknown) => {
          // Not moved: it stays outstanding (and stored), holding the checkpoint, and is tried
          // again from the store after a restart.
          this.#log.log("error", "dead-letter-failed", { reason: (err as Error).message });
        },
      );
  }

  /** The parent is done with `m`: the consumer moves the checkpoint over it. */
  #finish(m: StoredMessage, epoch: number): void {
    this.#strikes.forget(m.offset);
    this.#consumer.done(this.#source as Source, m, epoch);
    this.stats.outstanding = this.#consumer.outstanding;
  }
}
