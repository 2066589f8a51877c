/**
 * Identity shares: each device's (or module's) part of the store quota. The router charges
 * every copy it stores to the identity that sent it; a sender whose live bytes would pass
 * the configured share (`maxSizeBytesPerIdentity`) is refused with `STORE_SHARE_EXCEEDED`,
 * while the others keep being stored. See docs/storage-format.md, "Identity shares".
 *
 * Counting, with no per-message scan and no memory that grows with the backlog:
 * - per identity and queue, the bytes appended (`total`), the bytes already gone
 *   (`released`), and at most {@link MAX_MARKS} marks `(end offset, total at end)`;
 * - acks, expiry and drop-oldest move a queue's head: marks below the head are released
 *   (refreshed from the store's figures when a sender would be refused and for status).
 *   Between two marks bytes are released late: an over-count, never an under-count, of at
 *   most one mark's span (about 2/{@link MAX_MARKS} of the identity's backlog in that queue),
 *   and never more than the queue holds;
 * - the table is saved in the store's KV every second (and on close) with, per queue, the
 *   offset it covers; after a crash the records after that offset are read once to catch up.
 */
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { MessageStore, QueueStats } from "../store/index.js";
import { inputBytes, parseCovered, parseIdentity, recordSize, type SavedIdentity } from "./share-records.js";

/** KV namespace of the saved table. */
const NS = "shares";
/** Key of the per-queue offsets the saved identities cover (written after them). */
const COVERED = "covered";
/** Prefix of one identity's saved entry. */
const IDENTITY = "i:";
/** Marks kept per identity and queue. */
const MAX_MARKS = 32;
/** Identities listed in status. */
const TOP = 10;
const SAVE_EVERY_MS = 1000;

/** One identity's bytes in one queue. */
interface QueueShare {
  /** Bytes stored in this queue by the identity since counting began. */
  total: number;
  /** Of those, bytes known to be gone (acked, expired, dropped). */
  released: number;
  /** Oldest first: end offset (exclusive), `total` at that offset; pairs flattened. */
  marks: number[];
  /** Settlement that made the last mark: later stores of the same one extend it. */
  settlement: number;
}

/** One identity's share: what {@link IdentityShares.admit} hands back to charge. */
export interface IdentityShare {
  readonly id: string;
  readonly queues: Map<string, QueueShare>;
  /** Σ (total − released) over its queues. */
  live: number;
  /** Admitted, not yet stored or failed. */
  pending: number;
  dirty: boolean;
}

/** What one admitted message costs: its identity and the bytes of its copies. */
export interface Charge {
  /** The table that admitted it (the share may be turned off and on while it is stored). */
  of: IdentityShares;
  share: IdentityShare;
  /** Bytes of a copy without an input name ({@link inputBytes} more for a copy with one). */
  base: number;
  total: number;
}

/** What status shows. */
export interface SharesStatus {
  maxSizeBytesPerIdentity: number;
  /** Messages refused since start because their sender's share was full. */
  refused: number;
  identities: number;
  /** The largest by live bytes, at most ten. */
  top: Array<{ identity: string; bytes: number }>;
}

/** Per-identity accounting of live bytes and the check against the share. */
export class IdentityShares {
  readonly #store: MessageStore;
  /** Queues the router fills (the only ones counted and read back after a crash). */
  readonly #counted: (queue: string) => boolean;
  #limit: number;
  readonly #shares = new Map<string, IdentityShare>();
  /** Per queue: every append of the router below this offset is counted. */
  readonly #covered = new Map<string, number>();
  #pendingMessages = 0;
  #settlement = 0;
  #refused = 0;
  /** The heads were refreshed in this event-loop turn: a burst of refusals reads them once. */
  #refreshedThisTurn = false;
  #timer: NodeJS.Timeout | undefined;
  #saving: Promise<void> | undefined;

  private constructor(store: MessageStore, counted: (queue: string) => boolean, limit: number) {
    this.#store = store;
    this.#counted = counted;
    this.#limit = limit;
  }

  /**
   * Loads the saved table (or starts one at the queues' current tails: what was stored
   * before is not charged to anyone), catches up on what was stored after the last save,
   * and saves every second until {@link close}.
   */
  static async open(
    store: MessageStore,
    counted: (queue: string) => boolean,
    limit: number,
  ): Promise<IdentityShares> {
    checkLimit(limit);
    const s = new IdentityShares(store, counted, limit);
    await s.#load();
    // A save that fails (the disk, a store closing under it) is simply made again next time.
    s.#timer = setInterval(() => void s.save().catch(() => undefined), SAVE_EVERY_MS);
    s.#timer.unref();
    return s;
  }

  /** Forgets a saved table (the share was turned off: counting stops). */
  static async clear(store: MessageStore): Promise<void> {
    for (const { key } of await store.kv.scan(NS)) await store.kv.delete(NS, key);
  }

  /** The share in bytes. */
  get limit(): number {
    return this.#limit;
  }

  set limit(bytes: number) {
    checkLimit(bytes);
    this.#limit = bytes;
  }

  /**
   * Reserves `total` bytes of `id`'s share for a message about to be stored, or returns
   * undefined (refused) when its live and pending bytes would pass the share.
   */
  admit(id: string, base: number, total: number): Charge | undefined {
    const share = this.#share(id);
    if (share.live + share.pending + total > this.#limit && !this.#refreshedThisTurn) {
      // Counts only go down as heads move: read them before refusing.
      this.refresh();
    }
    if (share.live + share.pending + total > this.#limit) {
      this.#refused++;
      return undefined;
    }
    share.pending += total;
    this.#pendingMessages++;
    return { of: this, share, base, total };
  }

  /** The error a refused sender gets. */
  refusal(id: string): EdgeHubError {
    return new EdgeHubError(
      ErrorCodes.STORE_SHARE_EXCEEDED,
      `${id} has ${this.#shares.get(id)?.live ?? 0} bytes stored, its share is ${this.#limit} (maxSizeBytesPerIdentity); it is accepted again as its messages are delivered or expire`,
    );
  }

  /**
   * Counts messages once stored: `charges[i]` is message `i` of the call, `parts[p].queues`
   * the queues of part `p`, `offsets[p][k]` the offsets the call got in the `k`th of them.
   */
  stored(
    charges: Array<Charge | undefined>,
    parts: ReadonlyArray<{ queues: string[]; input: string | undefined }>,
    offsets: number[][][],
  ): void {
    const settlement = ++this.#settlement;
    for (let p = 0; p < parts.length; p++) {
      const { queues: qs, input } = parts[p] as { queues: string[]; input: string | undefined };
      const extra = inputBytes(input);
      for (let k = 0; k < qs.length; k++) {
        const queue = qs[k] as string;
        const first = offsets[p]?.[k]?.[0] ?? 0;
        for (let i = 0; i < charges.length; i++) {
          const c = charges[i];
          if (c?.of === this) this.#add(c.share, queue, first + i + 1, c.base + extra, settlement);
        }
        const end = first + charges.length;
        if ((this.#covered.get(queue) ?? 0) < end) this.#covered.set(queue, end);
      }
    }
    this.#settle(charges);
  }

  /** Gives back what refused or failed messages had reserved. */
  failed(charges: Array<Charge | undefined>): void {
    this.#settle(charges);
  }

  #settle(charges: Array<Charge | undefined>): void {
    for (const c of charges) {
      if (c?.of !== this) continue;
      c.share.pending -= c.total;
      this.#pendingMessages--;
    }
  }

  #add(share: IdentityShare, queue: string, end: number, bytes: number, settlement: number): void {
    let q = share.queues.get(queue);
    if (q === undefined) {
      q = { total: 0, released: 0, marks: [], settlement: 0 };
      share.queues.set(queue, q);
    }
    q.total += bytes;
    share.live += bytes;
    share.dirty = true;
    const n = q.marks.length;
    // The last mark moves on for the same store call (offsets in order), and while it
    // spans less than 1/MAX_MARKS of the live bytes here: a new mark for each message of a
    // steady sender would cost a thinning each.
    if (
      n > 0 &&
      (q.settlement === settlement ||
        (q.total - (n > 2 ? (q.marks[n - 3] as number) : q.released)) * MAX_MARKS < q.total - q.released)
    ) {
      q.marks[n - 2] = end;
      q.marks[n - 1] = q.total;
      return;
    }
    q.settlement = settlement;
    q.marks.push(end, q.total);
    if (q.marks.length > 2 * MAX_MARKS) thin(q);
  }

  /**
   * Releases what acks, expiry and drop-oldest removed: marks below each queue's head, all
   * of an emptied queue, and anything past what the queue still holds. Identities with
   * nothing left are forgotten (saved as deleted).
   */
  refresh(): void {
    if (!this.#refreshedThisTurn) {
      this.#refreshedThisTurn = true;
      setImmediate(() => {
        this.#refreshedThisTurn = false;
      });
    }
    const queues = new Map<string, QueueStats>();
    for (const q of this.#store.statsNow().queues) queues.set(q.name, q);
    for (const share of this.#shares.values()) {
      for (const [name, q] of share.queues) {
        const figures = queues.get(name);
        const before = q.released;
        if (!figures || figures.count === 0) {
          q.released = q.total;
          q.marks.length = 0;
        } else {
          let i = 0;
          while (i < q.marks.length && (q.marks[i] as number) <= figures.head) {
            q.released = Math.max(q.released, q.marks[i + 1] as number);
            i += 2;
          }
          if (i > 0) q.marks.splice(0, i);
          q.released = Math.max(q.released, q.total - figures.bytes);
        }
        if (q.released !== before) {
          share.live -= q.released - before;
          share.dirty = true;
        }
        if (q.released === q.total) share.queues.delete(name);
      }
    }
  }

  /** Figures for `/edge/status`, heads refreshed first. */
  status(): SharesStatus {
    this.refresh();
    const top: Array<{ identity: string; bytes: number }> = [];
    let identities = 0;
    for (const s of this.#shares.values()) {
      if (s.live === 0) continue;
      identities++;
      top.push({ identity: s.id, bytes: s.live });
    }
    top.sort((a, b) => b.bytes - a.bytes || (a.identity < b.identity ? -1 : 1));
    return {
      maxSizeBytesPerIdentity: this.#limit,
      refused: this.#refused,
      identities,
      top: top.slice(0, TOP),
    };
  }

  /**
   * Writes the identities that changed, then the offsets they cover. A crash between the
   * two leaves entries newer than the offsets: each entry carries its own, so catching up
   * counts nothing twice.
   */
  save(): Promise<void> {
    this.#saving ??= this.#save().finally(() => {
      this.#saving = undefined;
    });
    return this.#saving;
  }

  async #save(): Promise<void> {
    if (this.#store.closed) return;
    this.refresh();
    const covered: Record<string, number> = Object.create(null);
    // With nothing in flight, every record of the router below a queue's tail is counted;
    // otherwise what the stores answered so far is.
    const idle = this.#pendingMessages === 0;
    for (const q of this.#store.statsNow().queues) {
      const end = idle ? q.tail : this.#covered.get(q.name);
      if (this.#counted(q.name) && end !== undefined) covered[q.name] = end;
    }
    const writes: Array<Promise<void>> = [];
    for (const s of this.#shares.values()) {
      if (s.live === 0 && s.pending === 0) {
        this.#shares.delete(s.id);
        if (s.dirty) writes.push(this.#store.kv.delete(NS, IDENTITY + s.id));
        continue;
      }
      if (!s.dirty) continue;
      s.dirty = false;
      const entry = { covered, queues: Object.create(null) as SavedIdentity["queues"] };
      for (const [name, q] of s.queues) entry.queues[name] = [q.total, q.released, q.marks];
      writes.push(this.#store.kv.put(NS, IDENTITY + s.id, JSON.stringify(entry)));
    }
    await Promise.all(writes);
    await this.#store.kv.put(NS, COVERED, JSON.stringify(covered));
  }

  async #load(): Promise<void> {
    const stats = await this.#store.stats();
    const saved = await this.#store.kv.get(NS, COVERED);
    const covered = saved ? parseCovered(saved) : undefined;
    const entries = new Map<string, SavedIdentity>();
    for (const { key, value } of await this.#store.kv.scan(NS, IDENTITY)) {
      const entry = parseIdentity(value);
      const share = this.#share(key.slice(IDENTITY.length));
      entries.set(share.id, entry);
      for (const [name, [total, released, marks]] of Object.entries(entry.queues)) {
        share.queues.set(name, { total, released, marks, settlement: 0 });
        share.live += total - released;
      }
    }
    const settlement = ++this.#settlement;
    for (const q of stats.queues) {
      if (!this.#counted(q.name)) continue;
      // Saved: catch up from where the save stopped (a queue it does not name was made
      // since: from its start). No table yet: counting starts at the tail.
      const from = covered ? (covered.get(q.name) ?? 0) : q.tail;
      for (let next = Math.max(from, q.head); next < q.tail; ) {
        const batch = await this.#store.read(q.name, { from: next, limit: 1000 });
        const last = batch.at(-1);
        if (!last) break;
        for (const m of batch) {
          const { "$.cdid": device, "$.cmid": module } = m.properties;
          if (device === undefined) continue;
          const id = module === undefined ? device : `${device}/${module}`;
          // Counted already by an entry saved after the offsets were.
          if (m.offset < (entries.get(id)?.covered.get(q.name) ?? 0)) continue;
          this.#add(
            this.#share(id),
            q.name,
            m.offset + 1,
            recordSize(m.properties, m.body.length),
            settlement,
          );
        }
        next = last.offset + 1;
      }
      this.#covered.set(q.name, q.tail);
    }
    this.refresh();
    await this.save();
  }

  /** The share of `id`, made empty if it has none. */
  #share(id: string): IdentityShare {
    let share = this.#shares.get(id);
    if (share === undefined) {
      share = { id, queues: new Map(), live: 0, pending: 0, dirty: false };
      this.#shares.set(id, share);
    }
    return share;
  }

  /** Saves and stops saving. Call before the store closes. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.save();
  }
}

function checkLimit(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, "maxSizeBytesPerIdentity must be a positive integer");
}

/**
 * Drops the mark whose removal delays the fewest bytes (the smallest span between its
 * neighbours), never the last one.
 */
function thin(q: QueueShare): void {
  const m = q.marks;
  let best = 0;
  let bestSpan = Number.POSITIVE_INFINITY;
  for (let i = 0; i + 2 < m.length; i += 2) {
    const before = i === 0 ? q.released : (m[i - 1] as number);
    const span = (m[i + 3] as number) - before;
    if (span < bestSpan) {
      bestSpan = span;
      best = i;
    }
  }
  m.splice(best, 2);
}

/**
 * Follows the configured share: opens the table when it is turned on, sets the new share
 * while on, and when it is turned off saves nothing and forgets the table (what is stored
 * meanwhile is charged to no one). Returns what the router should use.
 */
export async function followShare(
  current: IdentityShares | undefined,
  limit: number,
  store: MessageStore,
  counted: (queue: string) => boolean,
): Promise<IdentityShares | undefined> {
  if (limit > 0 && current) {
    current.limit = limit;
    return current;
  }
  if (limit > 0) return IdentityShares.open(store, counted, limit);
  // The last save finishes before the table is forgotten, so none lands after.
  await current?.close();
  await IdentityShares.clear(store);
  return undefined;
}
