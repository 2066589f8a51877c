/**
 * Dispositions of one connection, kept apart by outcome. rhea writes the dispositions of
 * one flush in ranges and merges the first two deliveries of a range whatever their
 * outcomes (`write_dispositions` in its session.js, 3.0.5), so an accepted and a rejected
 * message settled in the same turn could both read as one of them. An outcome that differs
 * from the one waiting for the flush is held for the next flush.
 */
import type { Delivery } from "rhea";

/** Why a delivery is refused, as AMQP says it. */
export type Refusal = { condition: string; description: string };

export class DispositionGate {
  /** The outcome of the dispositions rhea writes on its next flush, if any are waiting. */
  #waiting: "accepted" | "rejected" | undefined;
  readonly #closed: () => boolean;

  /** @param closed true once the connection is gone (nothing is settled then). */
  constructor(closed: () => boolean) {
    this.#closed = closed;
  }

  /** Accepts `delivery`, or rejects it with `error`; nothing for one the client sent settled. */
  settle(delivery: Delivery, error?: Refusal): void {
    if (delivery.remote_settled || this.#closed()) return;
    const outcome = error ? "rejected" : "accepted";
    if (this.#waiting !== undefined && this.#waiting !== outcome) {
      setImmediate(() => this.settle(delivery, error));
      return;
    }
    if (error) delivery.reject(error);
    else delivery.accept();
    if (this.#waiting === undefined) {
      this.#waiting = outcome;
      // Queued after rhea's flush (the settle above asked for it), or after one already queued.
      process.nextTick(() => {
        this.#waiting = undefined;
      });
    }
  }
}
