/**
 * Store acknowledgements of one queue, batched: the consumer asks for the checkpoint as it
 * moves, and the store is acknowledged up to the highest asked, one call at a time, after
 * the current turn (every completion of one socket read lands in one store call).
 */
import type { Clock } from "./clock.js";

/** Acknowledges a queue up to the highest offset asked, one store call at a time. */
export class AckBatcher {
  readonly #write: (upTo: number) => Promise<void>;
  readonly #written: (upTo: number) => void;
  readonly #failed: (err: unknown) => void;
  readonly #clock: Clock;
  /** Highest offset asked for. */
  #wanted: number;
  /** Highest offset the store acknowledged. */
  #done: number;
  #scheduled = false;
  #running: Promise<void> | undefined;

  /**
   * @param acked the offset the store is acknowledged up to already (-1: none).
   * @param written told after each store call that succeeded.
   * @param failed told when a store call failed: that offset is asked again with the next move.
   */
  constructor(
    acked: number,
    clock: Clock,
    write: (upTo: number) => Promise<void>,
    written: (upTo: number) => void,
    failed: (err: unknown) => void,
  ) {
    this.#wanted = acked;
    this.#done = acked;
    this.#clock = clock;
    this.#write = write;
    this.#written = written;
    this.#failed = failed;
  }

  /** The offset the store is acknowledged up to. */
  get acked(): number {
    return this.#done;
  }

  /** True while an acknowledgement is asked and not yet written. */
  get busy(): boolean {
    return this.#scheduled || this.#done < this.#wanted;
  }

  /** Asks for the queue to be acknowledged up to `upTo` (a lower or equal offset is a no-op). */
  ack(upTo: number): void {
    if (upTo <= this.#wanted) return;
    this.#wanted = upTo;
    if (this.#scheduled || this.#running) return;
    this.#scheduled = true;
    this.#clock.after(0, () => {
      this.#scheduled = false;
      this.#running = this.#run();
    });
  }

  async #run(): Promise<void> {
    try {
      while (this.#done < this.#wanted) {
        const upTo = this.#wanted;
        await this.#write(upTo);
        this.#done = upTo;
        this.#written(upTo);
      }
    } catch (err) {
      // Asked again with the next move of the checkpoint; until then it is delivered again
      // after a restart (at least once).
      this.#wanted = this.#done;
      this.#failed(err);
    } finally {
      this.#running = undefined;
    }
  }

  /** Resolves when nothing asked is left to write (or its write failed). */
  async settled(): Promise<void> {
    while (this.#scheduled || this.#running) {
      if (this.#running) await this.#running;
      else await new Promise<void>((resolve) => this.#clock.after(0, resolve));
    }
  }
}
