/**
 * Where a client's drain is in one of its delivery queues: offsets sent, the contiguous
 * prefix the client acknowledged, and the store acknowledgements that follow it, coalesced.
 */

/** What a client's drain keeps of one of its queues. */
export class Cursor {
  /** Next offset to read. */
  from = 0;
  /** Offsets sent and not yet part of the acknowledged prefix, in send order (from `head`). */
  #sent: number[] = [];
  #head = 0;
  readonly #done = new Set<number>();
  readonly acks: AckCoalescer;

  constructor(ack: (offset: number) => Promise<void>, failed: (err: unknown) => void) {
    this.acks = new AckCoalescer(ack, failed);
  }

  sent(offset: number): void {
    this.#sent.push(offset);
  }

  /** True while some message sent is not acknowledged by the client. */
  get outstanding(): boolean {
    return this.#head < this.#sent.length;
  }

  /** The client acknowledged `offset`: the queue is acknowledged up to the contiguous prefix. */
  acked(offset: number): void {
    this.#done.add(offset);
    let upTo = -1;
    while (this.#head < this.#sent.length && this.#done.has(this.#sent[this.#head] as number)) {
      upTo = this.#sent[this.#head] as number;
      this.#done.delete(upTo);
      this.#head++;
    }
    // A long drain does not keep every offset it sent.
    if (this.#head > 1024) {
      this.#sent = this.#sent.slice(this.#head);
      this.#head = 0;
    }
    if (upTo >= 0) this.acks.ack(upTo);
  }
}

/** Acknowledges a queue up to the highest offset asked, one store call at a time. */
class AckCoalescer {
  readonly #ack: (offset: number) => Promise<void>;
  readonly #failed: (err: unknown) => void;
  #wanted = -1;
  #running: Promise<void> | undefined;

  constructor(ack: (offset: number) => Promise<void>, failed: (err: unknown) => void) {
    this.#ack = ack;
    this.#failed = failed;
  }

  ack(offset: number): void {
    if (offset <= this.#wanted) return;
    this.#wanted = offset;
    this.#running ??= this.#run();
  }

  async #run(): Promise<void> {
    let acked = -1;
    try {
      while (acked < this.#wanted) {
        acked = this.#wanted;
        await this.#ack(acked);
      }
    } catch (err) {
      this.#failed(err);
    } finally {
      this.#running = undefined;
    }
  }

  /** Resolves when no acknowledgement is left to write. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }
}
