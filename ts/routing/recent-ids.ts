/**
 * Forwarder ids (`$.fid`, the router's `FORWARD_ID`) recently stored per sender, for
 * messages a child hub forwards: after a link loss it resends what it had in flight, and
 * what was already stored is acknowledged again instead of stored twice. The ids are the
 * child hub's, one per stored message, never the device's `$.mid`. Bounded: the last
 * {@link PER_SENDER} ids of the last {@link SENDERS} senders (a resend covers at most the
 * child's window of one lane).
 */
const PER_SENDER = 512;
const SENDERS = 4096;

interface Recent {
  ids: Set<string>;
  ring: string[];
  next: number;
}

/** Recently stored message ids by sender. */
export class RecentIds {
  /** Insertion order is recency: a touched sender is moved to the end. */
  readonly #senders = new Map<string, Recent>();

  has(sender: string, id: string): boolean {
    return this.#senders.get(sender)?.ids.has(id) === true;
  }

  /** Records `id` as stored for `sender`. */
  add(sender: string, id: string): void {
    let r = this.#senders.get(sender);
    if (r) this.#senders.delete(sender);
    else {
      r = { ids: new Set(), ring: [], next: 0 };
      if (this.#senders.size >= SENDERS) {
        const oldest = this.#senders.keys().next().value;
        if (oldest !== undefined) this.#senders.delete(oldest);
      }
    }
    this.#senders.set(sender, r);
    if (r.ids.has(id)) return;
    if (r.ring.length < PER_SENDER) r.ring.push(id);
    else {
      r.ids.delete(r.ring[r.next] as string);
      r.ring[r.next] = id;
      r.next = (r.next + 1) % PER_SENDER;
    }
    r.ids.add(id);
  }
}
