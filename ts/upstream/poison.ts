/**
 * Poison messages: a parent that ends the connection each time one message is sent refuses
 * that message (an IoT Hub limit it enforces by disconnecting). The forwarder counts, per
 * stored message, the connections the parent ended while it was the oldest unacknowledged of
 * its lane; at {@link POISON_TRIES} in a row it is dead-lettered and the lane moves on.
 */

/** Connections ended by the parent in a row, with the message the oldest unacknowledged, before it is dead-lettered. */
export const POISON_TRIES = 3;
/** Bound on the messages with strikes remembered (one per drop; forgotten as they are done). */
const MAX_STRUCK = 10_000;

/** Strikes by stored offset. */
export class PoisonStrikes {
  readonly #byOffset = new Map<number, number>();

  /** Counts a drop against `offset`; true when it reached {@link POISON_TRIES} (and is forgotten). */
  strike(offset: number): boolean {
    const strikes = (this.#byOffset.get(offset) ?? 0) + 1;
    if (strikes >= POISON_TRIES) {
      this.#byOffset.delete(offset);
      return true;
    }
    if (this.#byOffset.size >= MAX_STRUCK) this.#byOffset.clear();
    this.#byOffset.set(offset, strikes);
    return false;
  }

  /** The message is done (acknowledged, expired, dead-lettered). */
  forget(offset: number): void {
    this.#byOffset.delete(offset);
  }
}
