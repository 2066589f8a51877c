/**
 * Where a consumer is in one of its queues: what it read, what is done, and the checkpoint —
 * the offset up to which the queue may be acknowledged.
 *
 * The unacknowledged part of the queue is split into segments by offset: one in stored
 * order; two after a live-first resume (the backlog before the split point, the live
 * messages from it). Each segment is read in offset order from its own cursor.
 *
 * Invariants: segments are contiguous and in offset order; a segment's read offsets are
 * in increasing order; the checkpoint is below the first read offset not done, and below
 * the cursor of the first segment not wholly read — so everything at or under it is done.
 */

interface Segment {
  /** First offset after the segment (Infinity for the last). */
  end: number;
  /** Next offset to read. */
  next: number;
  /** Read offsets not yet passed by the checkpoint, from `head`. */
  order: number[];
  head: number;
  /** Every offset below `end` has been read. */
  exhausted: boolean;
}

function segment(next: number, end = Number.POSITIVE_INFINITY): Segment {
  return { end, next, order: [], head: 0, exhausted: false };
}

/** A read to make: `segment` from `from`. */
export interface ReadPlan {
  segment: number;
  from: number;
}

/** Read and done offsets of one queue. */
export class Progress {
  #segments: Segment[];
  /** Offsets done but not yet passed by the checkpoint (some possibly not read again yet). */
  readonly #done = new Set<number>();
  /** Where the live segment starts (the split point). */
  #liveStart = 0;

  /** @param acked the offset the queue is acknowledged up to (-1: none). */
  constructor(acked: number) {
    this.#segments = [segment(acked + 1)];
  }

  /** Messages read and not done. */
  get outstanding(): number {
    let n = 0;
    for (const s of this.#segments) n += s.order.length - s.head;
    return n;
  }

  /** The first offset of the live segment, while the queue is split. */
  get liveFrom(): number | undefined {
    return this.#segments.length > 1 ? this.#liveStart : undefined;
  }

  /** Splits at `tail` (the queue's next offset): from there on messages are live and read first. */
  splitAt(tail: number): void {
    const only = this.#segments[0] as Segment;
    if (this.#segments.length !== 1 || tail <= only.next) return;
    only.end = tail;
    this.#liveStart = tail;
    this.#segments.push(segment(tail));
  }

  /**
   * The next read: the live segment first when `liveFirst` and it may have more; else the
   * first segment not wholly read.
   */
  plan(liveFirst: boolean, liveCaughtUp: boolean): ReadPlan | undefined {
    const last = this.#segments.length - 1;
    if (liveFirst && last > 0 && !liveCaughtUp)
      return { segment: last, from: (this.#segments[last] as Segment).next };
    const i = this.#segments.findIndex((s) => !s.exhausted);
    if (i < 0) return undefined;
    return { segment: i, from: (this.#segments[i] as Segment).next };
  }

  /**
   * Records what a read of `plan` returned (in offset order); returns the offsets that
   * belong to the segment (the others were read through another segment).
   */
  recordRead<T extends { offset: number }>(plan: ReadPlan, messages: T[], asked: number): T[] {
    const s = this.#segments[plan.segment];
    if (!s) return [];
    const mine = messages.filter((m) => m.offset < s.end);
    for (const m of mine) s.order.push(m.offset);
    const last = mine.at(-1);
    if (last) s.next = last.offset + 1;
    if (mine.length < messages.length || (s.end !== Number.POSITIVE_INFINITY && messages.length < asked)) {
      s.exhausted = true;
    }
    return mine;
  }

  /** True when `offset` was done before (a read after a reset finds it again). */
  isDone(offset: number): boolean {
    return this.#done.has(offset);
  }

  /** Marks `offset` done; true when the checkpoint may have moved. */
  finish(offset: number): boolean {
    this.#done.add(offset);
    let moved = false;
    for (const s of this.#segments) {
      while (s.head < s.order.length && this.#done.has(s.order[s.head] as number)) {
        this.#done.delete(s.order[s.head] as number);
        s.head++;
        moved = true;
      }
      if (s.head > 4096) {
        s.order = s.order.slice(s.head);
        s.head = 0;
      }
    }
    // A backlog segment wholly read and done merges into the live one.
    while (this.#segments.length > 1) {
      const first = this.#segments[0] as Segment;
      if (!first.exhausted || first.head < first.order.length) break;
      this.#segments.shift();
      moved = true;
    }
    return moved;
  }

  /** The offset the queue may be acknowledged up to. */
  checkpoint(): number {
    const s = this.#segments[0] as Segment;
    const first = s.order[s.head];
    return first === undefined ? (s.exhausted ? s.end : s.next) - 1 : first - 1;
  }

  /**
   * Forgets what was read (it is read again later from the checkpoint); offsets done above
   * the checkpoint are remembered so they are not sent again.
   */
  reset(acked: number): void {
    const from = Math.max(acked, this.checkpoint()) + 1;
    for (const offset of this.#done) if (offset < from) this.#done.delete(offset);
    this.#segments = [segment(from)];
  }
}
