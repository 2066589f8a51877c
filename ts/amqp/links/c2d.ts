/**
 * The delivery link: the client's receiver on `/devices/{d}/messages/devicebound` (C2D), or
 * on a module's `/devices/{d}/modules/{m}/messages/events` (its inputs, the input's name in
 * the `x-opt-input-name` annotation); our sender. Messages come from the same durable
 * delivery queues the MQTT head drains (../../delivery/device-delivery.ts); the client's
 * disposition settles each: `accepted` completes it, `rejected` completes it too (IoT Hub
 * dead-letters a rejected C2D message: it is never sent again), `released` or `modified`
 * abandons it (sent again, in order). rhea sends only as the client's credit allows; what
 * waits is bounded by the delivery's window.
 */
import type { Delivery, Sender } from "rhea";
import type { Outgoing, Settled } from "../../delivery/device-delivery.js";
import { toAmqp } from "../message.js";

interface Pending {
  resolve: (s: Settled) => void;
  reject: (err: Error) => void;
}

/** Sends one client's deliveries on one link. */
export class DeliveryLink {
  readonly #sender: Sender;
  readonly #pending = new Map<Delivery, Pending>();
  #closed = false;

  constructor(sender: Sender) {
    this.#sender = sender;
  }

  /** Sends `m`; resolves when the client settles it, rejects when the link goes first. */
  send(m: Outgoing, dup: boolean): Promise<Settled> {
    if (this.#closed || !this.#sender.is_open()) return Promise.reject(new Error("delivery link closed"));
    const message = toAmqp(m);
    // IoT Hub's count of earlier attempts; at least one when it was sent before.
    if (dup) message.delivery_count = 1;
    return new Promise((resolve, reject) => {
      this.#pending.set(this.#sender.send(message), { resolve, reject });
    });
  }

  /** The client's disposition of `delivery`. */
  settled(delivery: Delivery, outcome: "accepted" | "rejected" | "released"): void {
    const p = this.#pending.get(delivery);
    if (!p) return;
    this.#pending.delete(delivery);
    p.resolve(outcome === "released" ? "abandoned" : outcome === "rejected" ? "rejected" : "completed");
  }

  /** The link or its connection ended: what was not settled goes again on the next one. */
  close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const p of this.#pending.values()) p.reject(new Error(`delivery link closed: ${reason}`));
    this.#pending.clear();
  }
}
