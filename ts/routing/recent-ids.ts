/**
 * Forwarder ids (`$.fid`, the router's `FORWARD_ID`) recently stored per sender, for
 * messages a child hub forwards: after a link loss it resends what it had in flight, and
 * what was already stored is acknowledged again instead of stored twice. The ids are the
 * child hub's, one per stored message, never the device's `$.mid`. Bounded: the last
 * {@link PER_SENDER} ids of the last {@link SENDERS} senders (a resend covers at most the
 * child's window of one lane).
 *
 * An id is kept as a 53-bit hash, not as its string: an id read from a topic is a slice that
 * would pin the whole topic (up to 64 KB) in memory, and a fixed-size entry bounds the filter
 * at about 35 bytes an id: 74 MB with all 4096 senders full, measured (170 MB with the
 * strings, and more when each pinned its topic). Two distinct ids of one sender
 * collide with a chance of about 1 in 2^35 per full sender; a child hub forging collisions
 * could only drop messages it forwards itself, which it can anyway.
 */
const PER_SENDER = 512;
const SENDERS = 4096;

interface Recent {
  ids: Set<number>;
  ring: Float64Array;
  size: number;
  next: number;
}

/** cyrb53: a fast, well-mixed 53-bit string hash (public domain, bryc). */
function hash53(s: string): number {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** Recently stored message ids by sender. */
export class RecentIds {
  /** Insertion order is recency: a touched sender is moved to the end. */
  readonly #senders = new Map<string, Recent>();

  has(sender: string, id: string): boolean {
    return this.#senders.get(sender)?.ids.has(hash53(id)) === true;
  }

  /** Drops everything of `sender` (its identity is gone). */
  forget(sender: string): void {
    this.#senders.delete(sender);
  }

  /** Records `id` as stored for `sender`. */
  add(sender: string, fid: string): void {
    const id = hash53(fid);
    let r = this.#senders.get(sender);
    if (r) this.#senders.delete(sender);
    else {
      r = { ids: new Set(), ring: new Float64Array(PER_SENDER), size: 0, next: 0 };
      if (this.#senders.size >= SENDERS) {
        const oldest = this.#senders.keys().next().value;
        if (oldest !== undefined) this.#senders.delete(oldest);
      }
    }
    this.#senders.set(sender, r);
    if (r.ids.has(id)) return;
    if (r.size < PER_SENDER) r.ring[r.size++] = id;
    else {
      r.ids.delete(r.ring[r.next] as number);
      r.ring[r.next] = id;
      r.next = (r.next + 1) % PER_SENDER;
    }
    r.ids.add(id);
  }
}
