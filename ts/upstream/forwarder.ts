/**
 * The forwarder: drains the `$upstream` queue to the parent, at least once, in stored
 * order per device.
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
import type { MessageStore, StoredMessage } from "../store/index.js";
import { DEAD_LETTER, DEAD_LETTER_QUEUE } from "../vocabulary.js";
import { Lane } from "./lane.js";
import { ConnectionLost, MessageRefused } from "./mqtt-client.js";
import { POISON_TRIES, PoisonStrikes } from "./poison.js";
import { Progress } from "./progress.js";
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
  readonly #liveFirst: boolean;
  readonly #readAhead: number;
  readonly #readAheadBytes: number;
  readonly #idleLinkMs: number;
  readonly #lanes = new Map<string, Lane>();
  #progress = new Progress(-1);
  /** Bytes held of messages read and not done, by offset. */
  #heldBytes = 0;
  readonly #sizes = new Map<number, number>();
  /** Until the parent is reachable ({@link Forwarder.resume}), nothing is read. */
  #paused = true;
  /** Bumped by {@link Forwarder.pause}: completions of an older generation only record what was acknowledged. */
  #generation = 0;
  /** Bumped by every pause and resume, so a resume overtaken by a pause does nothing. */
  #transitions = 0;
  /** Highest offset acknowledged to the store. */
  #acked = -1;
  /** The live segment's last read came back short: read the backlog until something new is stored. */
  #liveCaughtUp = false;
  #reading = false;
  #wantRead = false;
  #ackScheduled = false;
  #acking = false;
  #closed = false;
  readonly #rate: RateLimit | undefined;
  readonly #mayRead: (() => boolean) | undefined;
  /** The last read found nothing new (cleared when messages are stored). */
  #caughtUp = false;
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
    this.#liveFirst = options.order === "live-first";
    this.#readAhead = options.readAhead ?? Math.max(4000, options.window * 20);
    this.#readAheadBytes = options.readAheadBytes ?? 16 * 2 ** 20;
    this.#idleLinkMs = options.idleLinkMs ?? 60_000;
    this.#rate = options.rate;
    this.#rate?.onResume(() => {
      for (const lane of this.#lanes.values()) this.#pump(lane);
    });
    this.#mayRead = options.mayRead;
  }

  /** Loads the checkpoint; draining starts on {@link Forwarder.resume}. */
  async start(): Promise<void> {
    const q = (await this.#store.stats()).queues.find((x) => x.name === this.#queue);
    this.#acked = q?.ackedUpTo ?? -1;
    this.#progress = new Progress(this.#acked);
  }

  /**
   * The parent is unreachable: stop reading and let go of what was read and not sent (it
   * stays stored). What the parent acknowledged meanwhile is remembered, so it is not sent again.
   */
  pause(): void {
    this.#transitions++;
    if (this.#paused) return;
    this.#paused = true;
    this.#generation++;
    this.#progress.reset(this.#acked);
    this.#heldBytes = 0;
    this.#sizes.clear();
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
    if (this.#liveFirst && this.#paused) {
      const tail = (await this.#store.stats()).queues.find((x) => x.name === this.#queue)?.tail ?? 0;
      if (transition !== this.#transitions) return;
      this.#progress.splitAt(tail);
      const liveFrom = this.#progress.liveFrom ?? Number.POSITIVE_INFINITY;
      for (const lane of this.#lanes.values()) lane.liveFrom = liveFrom;
    }
    this.#paused = false;
    // The parent is back: links waiting out a backoff or suspended try again (identity
    // links in their pacer's slots, spread after the hub's own).
    for (const lane of this.#lanes.values()) lane.link.wake();
    this.wake();
  }

  /**
   * New messages were stored: read on and pump every lane (unless paused). Links are not
   * woken: one backing off from a busy parent keeps its backoff.
   */
  wake(): void {
    if (this.#paused) return;
    this.#liveCaughtUp = false;
    this.#caughtUp = false;
    this.#read();
    for (const lane of this.#lanes.values()) this.#pump(lane);
  }

  /** True when everything read is done and the last read found nothing more. */
  get idle(): boolean {
    return this.#progress.outstanding === 0 && !this.#reading && this.#caughtUp;
  }

  /** Stops: closes every link. Messages not acknowledged stay stored for the next start. */
  close(): void {
    this.#closed = true;
    this.#rate?.stop();
    for (const lane of [...this.#lanes.values()]) this.#closeLane(lane);
  }

  #read(): void {
    if (this.#closed || this.#paused) return;
    if (this.#mayRead && !this.#mayRead()) return;
    if (this.#reading) {
      this.#wantRead = true;
      return;
    }
    const outstanding = this.#progress.outstanding;
    if (outstanding >= this.#readAhead || this.#heldBytes >= this.#readAheadBytes) return;
    const plan = this.#progress.plan(this.#liveFirst, this.#liveCaughtUp);
    if (!plan) return;
    this.#reading = true;
    this.#wantRead = false;
    const limit = Math.min(READ_BATCH, this.#readAhead - outstanding);
    const generation = this.#generation;
    this.#store
      .read(this.#queue, { from: plan.from, limit, maxBytes: this.#readAheadBytes - this.#heldBytes })
      .then(
        (messages) => {
          this.#reading = false;
          if (this.#closed) return;
          if (generation !== this.#generation) {
            this.#read();
            return;
          }
          const live = this.#liveFirst && plan.segment > 0;
          if (live && messages.length < limit) this.#liveCaughtUp = true;
          for (const m of this.#progress.recordRead(plan, messages, limit)) this.#accept(m);
          this.stats.outstanding = this.#progress.outstanding;
          if (messages.length > 0 || this.#wantRead || live) this.#read();
          else {
            this.#caughtUp = true;
            if (this.#progress.outstanding === 0) this.emit("drained");
          }
        },
        (err: unknown) => {
          this.#reading = false;
          this.#log.log("error", "forwarder-read-failed", {
            queue: this.#queue,
            reason: (err as Error).message,
          });
          setTimeout(() => this.#read(), 1000).unref();
        },
      );
  }

  #accept(m: StoredMessage): void {
    if (this.#progress.isDone(m.offset)) {
      // Acknowledged before a pause let go of it.
      this.#finish(m.offset);
      return;
    }
    const size = m.body.length + 64;
    this.#sizes.set(m.offset, size);
    this.#heldBytes += size;
    const refusal = this.#uplink.unsendable(m, this.#queue);
    if (refusal !== undefined) {
      this.#deadLetter([m], refusal);
      return;
    }
    const name = this.#uplink.laneOf(m);
    const lane = this.#lanes.get(name) ?? this.#openLane(name);
    clearTimeout(lane.idleTimer);
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
    lane.liveFrom = this.#progress.liveFrom ?? Number.POSITIVE_INFINITY;
    this.#lanes.set(name, lane);
    this.stats.lanes = this.#lanes.size;
    lane.link.on("up", lane.onUp);
    lane.link.on("refused", lane.onRefused);
    lane.link.start();
    return lane;
  }

  #closeLane(lane: Lane): void {
    clearTimeout(lane.idleTimer);
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
      if (m.expiresAt !== null && m.expiresAt <= Date.now()) {
        this.stats.expired++;
        this.#finish(m.offset);
        continue;
      }
      const wire = this.#uplink.wireFormOf(m, this.#queue);
      lane.inflight++;
      this.stats.sent++;
      const generation = this.#generation;
      lane.link.publish(
        wire.topic,
        wire.payload,
        (err) => {
          if (!err) {
            this.stats.acked++;
            if (generation !== this.#generation) {
              this.#progress.finish(m.offset);
              return;
            }
            lane.inflight--;
            this.#finish(m.offset);
            this.#pump(lane);
            return;
          }
          if (generation !== this.#generation) return;
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
    clearTimeout(lane.idleTimer);
    lane.idleTimer = setTimeout(() => {
      if (lane.inflight > 0 || lane.waiting > 0) return;
      this.#closeLane(lane);
    }, this.#idleLinkMs);
    lane.idleTimer.unref();
  }

  #deadLetter(messages: StoredMessage[], reason: string): void {
    if (messages.length === 0) return;
    this.#log.log("warn", "dead-lettered", { queue: this.#queue, count: messages.length, reason });
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
          for (const m of messages) this.#finish(m.offset);
        },
        (err: unknown) => {
          // Not moved: it stays outstanding (and stored), holding the checkpoint, and is tried
          // again from the store after a restart.
          this.#log.log("error", "dead-letter-failed", { reason: (err as Error).message });
        },
      );
  }

  /** Marks an offset done and moves the checkpoint over the done prefix. */
  #finish(offset: number): void {
    this.#strikes.forget(offset);
    const size = this.#sizes.get(offset);
    if (size !== undefined) {
      this.#heldBytes -= size;
      this.#sizes.delete(offset);
    }
    if (!this.#progress.finish(offset)) return;
    this.stats.outstanding = this.#progress.outstanding;
    this.#scheduleAck();
    this.#read();
  }

  /** The last checkpointed offset: the one before the first outstanding, acknowledged in one store call per turn. */
  #scheduleAck(): void {
    if (this.#ackScheduled || this.#acking) return;
    this.#ackScheduled = true;
    setImmediate(() => {
      this.#ackScheduled = false;
      const upTo = this.#progress.checkpoint();
      if (upTo <= this.#acked) return;
      this.#acking = true;
      this.#store.ack(this.#queue, upTo).then(
        () => {
          this.#acking = false;
          this.#acked = upTo;
          this.emit("checkpoint", upTo);
          if (this.#progress.checkpoint() > upTo) this.#scheduleAck();
          if (this.#progress.outstanding === 0 && !this.#reading) this.emit("drained");
        },
        (err: unknown) => {
          this.#acking = false;
          this.#log.log("error", "checkpoint-failed", { queue: this.#queue, reason: (err as Error).message });
        },
      );
    });
  }
}
