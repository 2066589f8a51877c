/**
 * The queue consumer: how local delivery and the upstream forwarder drain their queues. It
 * reads queues from a cursor in rank order (priority 0 first), hands each message to a
 * target (an adapter that knows how to send one and what an ack is), keeps a window of
 * what is read and not done (count and bytes), moves each queue's checkpoint over the
 * contiguous prefix that is done, and acknowledges the store in batches. Its state table is
 * docs/queue-consumer.md; test/queue/consumer.test.ts tests it row by row.
 *
 * Invariants:
 * - Every message read is handed to the target in the turn its read returns, once per
 *   epoch; a message done in an earlier epoch is not handed over again.
 * - A queue's checkpoint never passes a message not done, so a crash resends at most what
 *   was read past it, and loses nothing.
 * - A read returning while paused is dropped unrecorded (read again from the same place),
 *   so a pause holds nothing unsent and a resume resends nothing sent.
 * - A queue is forgotten as empty only if nothing was stored in it since its read began.
 */
import type { MessageStore, StoredMessage } from "../store/index.js";
import { rankOf } from "../vocabulary.js";
import { AckBatcher } from "./ack-batcher.js";
import { Progress, type ReadPlan } from "./checkpoint.js";
import { type Clock, systemClock } from "./clock.js";
import { Window } from "./window.js";

/** How a consumer's messages leave: the adapter of local delivery or of the forwarder. */
export interface ConsumerTarget {
  /**
   * Sends `m`, read from `source` in `epoch`. When it is done with it (acknowledged by the
   * receiver, expired, dead-lettered), the adapter calls {@link QueueConsumer.done} with the
   * same three; one it could not send it simply never reports (it is read again after
   * {@link QueueConsumer.pause} with `forget`, or a new consumer).
   */
  deliver(m: StoredMessage, source: Source, epoch: number): void;
}

/** The store as the consumer uses it. */
export type ConsumerStore = Pick<MessageStore, "read" | "ack">;

/** Tuning and hooks of a consumer. */
export interface ConsumerOptions {
  /** Messages read past the checkpoint at most (over every queue). */
  window: number;
  /** Bytes of messages handed over and not done at most. */
  windowBytes: number;
  /** Messages asked per read at most. */
  readBatch: number;
  /** After a resume at a split point, read what is stored from there on before the backlog. */
  liveFirst?: boolean;
  /** Reads only while this says so (a lower-priority forwarder waits for the higher ones). */
  mayRead?: () => boolean;
  /** Wait before reading again after a failed read. Default 1 s. */
  retryReadMs?: number;
  clock?: Clock;
  /** The store acknowledged `queue` up to `upTo`. */
  onCheckpoint?: (queue: string, upTo: number) => void;
  /** Every queue read to its end, nothing out and every acknowledgement written. */
  onDrained?: () => void;
  /** A read or a store acknowledgement failed (it is retried). */
  onError?: (what: "read" | "ack", queue: string, err: unknown) => void;
}

/** One queue of a consumer. */
export class Source {
  readonly queue: string;
  /** Read order: lower first. */
  readonly rank: number;
  progress: Progress;
  readonly acks: AckBatcher;
  /** May hold messages not read yet. */
  pending = true;
  /** Bumped by every store into the queue: an empty read forgets the queue only if it did not move. */
  stamp = 0;
  /** The live part's last read came back short: read the backlog until something new is stored. */
  liveCaughtUp = false;

  constructor(queue: string, rank: number, progress: Progress, acks: AckBatcher) {
    this.queue = queue;
    this.rank = rank;
    this.progress = progress;
    this.acks = acks;
  }
}

/** States of a consumer (docs/queue-consumer.md). */
export type ConsumerState = "paused" | "running" | "closed";

/** Drains one or more queues of one store to one target. */
export class QueueConsumer {
  readonly #store: ConsumerStore;
  readonly #target: ConsumerTarget;
  readonly #options: ConsumerOptions;
  readonly #clock: Clock;
  /** By rank, then by the order added. */
  readonly #sources: Source[] = [];
  readonly #window: Window;
  #state: ConsumerState = "paused";
  /** Bumped by a pause that forgets: completions of an older epoch only record what was done. */
  #epoch = 0;
  /** The source whose read (or hand-over) is under way. */
  #reading: Source | undefined;
  #cancelRetry: (() => void) | undefined;

  constructor(store: ConsumerStore, target: ConsumerTarget, options: ConsumerOptions) {
    this.#store = store;
    this.#target = target;
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
    this.#window = new Window(options.windowBytes);
  }

  get state(): ConsumerState {
    return this.#state;
  }

  /** The current epoch (see {@link ConsumerTarget.deliver}). */
  get epoch(): number {
    return this.#epoch;
  }

  /** Messages handed over and not done. */
  get outstanding(): number {
    return this.#window.count;
  }

  /** Bytes of the messages handed over and not done. */
  get heldBytes(): number {
    return this.#window.bytes;
  }

  /** Nothing out, every queue read to its end, every acknowledgement written. */
  get idle(): boolean {
    if (this.#reading || this.#window.count > 0) return false;
    for (const s of this.#sources) if (s.pending || s.progress.outstanding > 0 || s.acks.busy) return false;
    return true;
  }

  /** The first offset of the live part of the (single) queue after a live-first resume. */
  get liveFrom(): number | undefined {
    return this.#sources[0]?.progress.liveFrom;
  }

  /** The source of `queue`, if added. */
  source(queue: string): Source | undefined {
    for (const s of this.#sources) if (s.queue === queue) return s;
    return undefined;
  }

  /**
   * Adds `queue`, acknowledged up to `acked` (-1: unknown or none; the store reads from its
   * head), read in `rank` order (default: its priority suffix).
   */
  add(queue: string, acked = -1, rank = rankOf(queue)): Source {
    const existing = this.source(queue);
    if (existing) return existing;
    const source = new Source(
      queue,
      rank,
      new Progress(acked),
      new AckBatcher(
        acked,
        this.#clock,
        (upTo) => this.#store.ack(queue, upTo),
        (upTo) => {
          this.#options.onCheckpoint?.(queue, upTo);
          this.#checkDrained();
        },
        (err) => this.#options.onError?.("ack", queue, err),
      ),
    );
    let at = this.#sources.length;
    while (at > 0 && (this.#sources[at - 1] as Source).rank > rank) at--;
    this.#sources.splice(at, 0, source);
    return source;
  }

  /** Event `stored`: messages were appended to `queue` (added if new). */
  stored(queue: string): void {
    if (this.#state === "closed") return;
    const s = this.add(queue);
    s.pending = true;
    s.stamp++;
    s.liveCaughtUp = false;
    this.#read();
  }

  /** Event `wake`: reads again if it may (a higher-priority consumer drained, a gate opened). */
  wake(): void {
    this.#read();
  }

  /**
   * Event `resume`: reads on. `splitAt` (live-first, one queue): what is stored from that
   * offset on is read before the backlog.
   */
  resume(splitAt?: number): void {
    if (this.#state === "closed") return;
    if (splitAt !== undefined && this.#options.liveFirst && this.#sources.length === 1)
      (this.#sources[0] as Source).progress.splitAt(splitAt);
    this.#state = "running";
    this.#read();
  }

  /**
   * Event `pause`: stops reading and handing over. With `forget` (the receiver is away),
   * also lets go of what was read and not done: it is read again from the checkpoint after
   * the resume, and what completes meanwhile is remembered so it is not sent again.
   */
  pause(forget = false): void {
    if (this.#state === "closed") return;
    this.#state = "paused";
    this.#cancelRetry?.();
    this.#cancelRetry = undefined;
    if (!forget) return;
    this.#epoch++;
    this.#window.clear();
    for (const s of this.#sources) {
      s.progress.reset(s.acks.acked);
      s.pending = true;
      s.liveCaughtUp = false;
    }
  }

  /** Event `close`: reads and hands over nothing more; acknowledgements asked are still written. */
  close(): void {
    this.#state = "closed";
    this.#cancelRetry?.();
    this.#cancelRetry = undefined;
  }

  /** Resolves when every acknowledgement asked is written. */
  async settled(): Promise<void> {
    for (const s of this.#sources) await s.acks.settled();
  }

  /** Event `done`: the target is done with `m` (read from `source` in `epoch`). */
  done(source: Source, m: StoredMessage, epoch: number): void {
    if (epoch !== this.#epoch) {
      // Handed over before a pause forgot it: remembered, so the read after does not send it again.
      source.progress.finish(m.offset);
      return;
    }
    this.#window.give(m);
    if (source.progress.finish(m.offset)) source.acks.ack(source.progress.checkpoint());
    this.#read();
  }

  /** Messages read past the checkpoints, over every queue. */
  #readPast(): number {
    let n = 0;
    for (const s of this.#sources) n += s.progress.outstanding;
    return n;
  }

  #read(): void {
    if (this.#state !== "running") return;
    // One read at a time; the one under way reads again when it returns.
    if (this.#reading || this.#cancelRetry) return;
    if (this.#options.mayRead && !this.#options.mayRead()) return;
    const free = this.#options.window - this.#readPast();
    if (free <= 0 || this.#window.freeBytes <= 0) return;
    const liveFirst = this.#options.liveFirst === true;
    let source: Source | undefined;
    let plan: ReadPlan | undefined;
    for (const s of this.#sources) {
      if (!s.pending) continue;
      plan = s.progress.plan(liveFirst, s.liveCaughtUp);
      if (plan) {
        source = s;
        break;
      }
      s.pending = false;
    }
    if (!source || !plan) {
      this.#checkDrained();
      return;
    }
    this.#reading = source;
    const limit = Math.min(this.#options.readBatch, free);
    const epoch = this.#epoch;
    const stamp = source.stamp;
    const s = source;
    const p = plan;
    this.#store.read(s.queue, { from: p.from, limit, maxBytes: this.#window.freeBytes }).then(
      (messages) => this.#readDone(s, p, limit, epoch, stamp, messages),
      (err: unknown) => {
        this.#reading = undefined;
        this.#options.onError?.("read", s.queue, err);
        if (this.#state !== "running") return;
        this.#cancelRetry = this.#clock.after(this.#options.retryReadMs ?? 1000, () => {
          this.#cancelRetry = undefined;
          this.#read();
        });
      },
    );
  }

  #readDone(
    s: Source,
    plan: ReadPlan,
    limit: number,
    epoch: number,
    stamp: number,
    messages: StoredMessage[],
  ): void {
    if (this.#state !== "running" || epoch !== this.#epoch) {
      // Paused meanwhile: not recorded, so it is read again from the same place.
      this.#reading = undefined;
      this.#read();
      return;
    }
    // The live part came back short: the backlog is read next (a later empty read of the
    // live part, once the backlog is read, is an ordinary one).
    const live =
      this.#options.liveFirst === true && plan.segment > 0 && !s.liveCaughtUp && messages.length < limit;
    if (live) s.liveCaughtUp = true;
    let moved = false;
    // `#reading` stays set while handing over: a target completing at once asks for a read
    // that starts after this one is recorded.
    for (const m of s.progress.recordRead(plan, messages, limit)) {
      if (s.progress.isDone(m.offset)) {
        // Done before a pause let go of it.
        if (s.progress.finish(m.offset)) moved = true;
        continue;
      }
      this.#window.take(m);
      this.#target.deliver(m, s, epoch);
    }
    if (moved) s.acks.ack(s.progress.checkpoint());
    this.#reading = undefined;
    if (messages.length === 0 && s.stamp === stamp && !live) s.pending = false;
    this.#read();
  }

  #checkDrained(): void {
    if (this.#state === "running" && this.#options.onDrained && this.idle) this.#options.onDrained();
  }
}
