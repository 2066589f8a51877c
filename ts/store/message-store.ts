/**
 * MessageStore: the typed facade over the native message log. Validates arguments,
 * packs batches for one native call each, and turns native errors into
 * {@link EdgeHubError}s with stable codes.
 */
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { NativeKvPut, NativeQueueStats, NativeWhenFull } from "./binding.js";
import {
  DEFAULT_TTL,
  decodeRead,
  encodeBatch,
  type PreparedMessage,
  propertiesSize,
  type StoredMessage,
} from "./codec.js";
import { fromNative, type NativeStore, native } from "./native.js";

/** When an append resolves: see {@link StoreOptions.durability}. */
export type Durability = "fsync" | "wal";
/** Every {@link Durability}, for validation. */
export const DURABILITIES: readonly Durability[] = ["fsync", "wal"];

/** Options of {@link MessageStore.open}. */
export interface StoreOptions {
  /**
   * `"fsync"` (default): an append resolves once its WAL write is synced, so it survives a
   * power loss. `"wal"`: once it is written to the WAL file without fsync — it survives a
   * killed process but not a power loss (IoT Edge's own default); acks come sooner and cost
   * less CPU per message. Under `"wal"` an append that finds the store's writer idle is
   * written during the call, on this thread (a few microseconds, no thread hand-off); one
   * that would meet a RocksDB write stall is left to the writer thread instead.
   */
  durability?: Durability;
  /** TTL of messages that give none, in seconds; -1 = never expire. Default 7200. */
  defaultTtlSecs?: number;
  /** Quota of live message bytes (keys and values as stored). Default 10 GiB. */
  maxSizeBytes?: number;
  /** `"reject"` (default): a full store fails appends with `STORE_FULL`. `"drop-oldest"`: evicts. */
  whenFull?: "reject" | "drop-oldest";
}

/** A message to append. */
export interface AppendMessage {
  body: Buffer | Uint8Array;
  /** Application properties (UTF-8 strings). */
  properties?: Record<string, string>;
  /** Own time to live in seconds (-1 = never); defaults to the store's. */
  ttlSecs?: number;
}

/** One part of {@link MessageStore.appendParts}: messages for each of some queues. */
export interface AppendPart {
  queues: string[];
  messages: AppendMessage[];
}

/** A KV entry written with {@link MessageStore.appendParts}. */
export interface KvPut {
  ns: string;
  key: string;
  value: Buffer | Uint8Array | string;
}

/** Options of {@link MessageStore.read}. */
export interface ReadOptions {
  /** First offset to read (default 0); acked offsets are skipped. */
  from?: number;
  /** Most messages to return (default 1000). */
  limit?: number;
  /** Stop before bodies and properties exceed this many bytes (default 16 MiB; one message always fits). */
  maxBytes?: number;
}

/** Figures of one queue. */
export interface QueueStats {
  name: string;
  /** Live messages (stored, not acked, not expired and removed). */
  count: number;
  /** Live bytes. */
  bytes: number;
  /** Lowest live offset (equals `tail` when empty). */
  head: number;
  /** Next offset to be assigned. */
  tail: number;
  /** Highest acknowledged offset; -1 when nothing was acked (so `ackedUpTo + 1` is where to resume). */
  ackedUpTo: number;
  /** Age of the oldest live message in ms; `null` when empty. */
  oldestAgeMs: number | null;
}

/** Figures of the whole store. */
export interface StoreStats {
  queues: QueueStats[];
  /** Live messages in all queues. */
  count: number;
  /** Live bytes in all queues (what the quota limits). */
  bytes: number;
  maxSizeBytes: number;
  /** Messages removed because their TTL passed (since the store was created). */
  expired: number;
  /** Messages evicted by `drop-oldest` (since the store was created). */
  dropped: number;
}

/** A key and its value, as {@link KvSpace.scan} returns them. */
export interface KvEntry {
  key: string;
  value: Buffer;
}

/** Small durable state beside the queues, in namespaces. Writes are durable when they resolve. */
export interface KvSpace {
  put(ns: string, key: string, value: Buffer | Uint8Array | string): Promise<void>;
  get(ns: string, key: string): Promise<Buffer | null>;
  delete(ns: string, key: string): Promise<void>;
  /** Entries of `ns` whose key starts with `prefix`, in key order. */
  scan(ns: string, prefix?: string): Promise<KvEntry[]>;
}

const MAX_READ_BYTES = 16 * 2 ** 20;

function invalid(message: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, message);
}

function checkName(what: string, name: unknown): asserts name is string {
  if (typeof name !== "string" || name.length === 0) throw invalid(`${what} must be a non-empty string`);
}

function checkInteger(what: string, n: unknown, min: number): asserts n is number {
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min) {
    throw invalid(`${what} must be an integer >= ${min}, got ${String(n)}`);
  }
}

function checkTtl(what: string, ttl: unknown): asserts ttl is number {
  if (ttl !== -1) checkInteger(what, ttl, 1);
}

/** A queue's native figures as {@link QueueStats}, its oldest message's age taken at `now`. */
function queueFigures(q: NativeQueueStats, now: number): QueueStats {
  return {
    name: q.name,
    count: q.count,
    bytes: q.bytes,
    head: q.head,
    tail: q.tail,
    ackedUpTo: q.ackedUpTo ?? -1,
    oldestAgeMs: q.oldestEnqueuedAt == null ? null : Math.max(0, now - q.oldestEnqueuedAt),
  };
}

/** The offsets `first`, `first + 1`, … of `n` messages appended to one queue. */
function consecutive(first: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => first + i);
}

/** A KV entry's arguments, checked, its value as bytes. */
function checkPut({ ns, key, value }: KvPut): NativeKvPut {
  checkName("namespace", ns);
  if (typeof key !== "string") throw invalid("key must be a string");
  const bytes = typeof value === "string" ? Buffer.from(value) : value;
  if (!(bytes instanceof Uint8Array)) throw invalid("value must be a Buffer, Uint8Array or string");
  // The binding takes a Buffer: a view of the same bytes, not a copy.
  const buffer = Buffer.isBuffer(bytes)
    ? bytes
    : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { ns, key, value: buffer };
}

function prepare(messages: unknown): PreparedMessage[] {
  if (!Array.isArray(messages)) throw invalid("messages must be an array");
  return messages.map((m: unknown, i): PreparedMessage => {
    if (typeof m !== "object" || m === null) throw invalid(`message ${i} must be an object`);
    const { body, properties, ttlSecs } = m as AppendMessage;
    if (!(body instanceof Uint8Array)) throw invalid(`message ${i}: body must be a Buffer or Uint8Array`);
    if (properties !== undefined && (typeof properties !== "object" || properties === null)) {
      throw invalid(`message ${i}: properties must be an object of strings`);
    }
    let propsSize: number;
    try {
      propsSize = propertiesSize(properties);
    } catch (err) {
      throw invalid(`message ${i}: ${(err as Error).message}`);
    }
    if (ttlSecs !== undefined) checkTtl(`message ${i}: ttlSecs`, ttlSecs);
    return { body, properties, propsSize, ttl: ttlSecs ?? DEFAULT_TTL };
  });
}

/** The limits of `o` with defaults, checked. */
function checkLimits(o: StoreOptions): {
  defaultTtlSecs: number;
  maxSizeBytes: number;
  whenFull: NativeWhenFull;
} {
  const whenFull = o.whenFull ?? "reject";
  if (whenFull !== "reject" && whenFull !== "drop-oldest") {
    throw invalid('whenFull must be "reject" or "drop-oldest"');
  }
  const defaultTtlSecs = o.defaultTtlSecs ?? 7200;
  checkTtl("defaultTtlSecs", defaultTtlSecs);
  const maxSizeBytes = o.maxSizeBytes ?? 10 * 2 ** 30;
  checkInteger("maxSizeBytes", maxSizeBytes, 1);
  return { defaultTtlSecs, maxSizeBytes, whenFull };
}

/** Runs a native call, converting what it throws or rejects with. */
async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw fromNative(err);
  }
}

/**
 * A durable log of named queues. Offsets are per queue, start at 0 and are never reused;
 * appends resolve once durable; reads return live messages in offset order; acks consume
 * prefixes.
 *
 * @example
 * const store = await MessageStore.open("./data", { defaultTtlSecs: 7200 });
 * const [offset] = await store.append("$upstream", [{ body: Buffer.from("hi") }]);
 * const batch = await store.read("$upstream", { from: 0, limit: 1000 });
 * await store.ack("$upstream", offset);
 * await store.close();
 */
export class MessageStore {
  readonly #native: NativeStore;
  readonly #path: string;
  #closed = false;
  /** The key-value space of this store. */
  readonly kv: KvSpace;
  /** Called after each durable append (`append`, `appendParts`) with its commit time in seconds (metrics). */
  onCommit: ((seconds: number) => void) | undefined;

  private constructor(nativeStore: NativeStore, path: string) {
    this.#native = nativeStore;
    this.#path = path;
    this.kv = {
      put: (ns, key, value) =>
        this.#run(() => {
          const put = checkPut({ ns, key, value });
          return this.#native.kvPut(put.ns, put.key, put.value);
        }),
      get: (ns, key) =>
        this.#run(() => {
          checkName("namespace", ns);
          if (typeof key !== "string") throw invalid("key must be a string");
          return this.#native.kvGet(ns, key);
        }),
      delete: (ns, key) =>
        this.#run(() => {
          checkName("namespace", ns);
          if (typeof key !== "string") throw invalid("key must be a string");
          return this.#native.kvDelete(ns, key);
        }),
      scan: (ns, prefix = "") =>
        this.#run(() => {
          checkName("namespace", ns);
          if (typeof prefix !== "string") throw invalid("prefix must be a string");
          return this.#native.kvScan(ns, prefix);
        }),
    };
  }

  /**
   * Opens the store in directory `dir`, creating it if needed. Fails with `STORE_CORRUPT`
   * (naming the path) if the files there are not a readable store, `STORE_LOCKED` if it
   * is open elsewhere.
   */
  static async open(dir: string, options: StoreOptions = {}): Promise<MessageStore> {
    checkName("dir", dir);
    const durability = options.durability ?? "fsync";
    if (!DURABILITIES.includes(durability))
      throw invalid(`durability must be ${DURABILITIES.map((d) => `"${d}"`).join(" or ")}`);
    const limits = checkLimits(options);
    const handle = await call(() => native().openStore(dir, { durability, ...limits }));
    return new MessageStore(handle, dir);
  }

  /**
   * Changes the default TTL, the quota and the policy when full, for every append after
   * this call; absent fields keep their defaults (7200 s, 10 GiB, reject). A quota below
   * what is stored refuses (or, under drop-oldest, evicts for) later appends until enough
   * is acknowledged or expired; nothing stored is lost by the change itself.
   */
  async configure(limits: Pick<StoreOptions, "defaultTtlSecs" | "maxSizeBytes" | "whenFull">): Promise<void> {
    const l = checkLimits(limits);
    await this.#run(() => this.#native.configure(l.defaultTtlSecs, l.maxSizeBytes, l.whenFull));
  }

  /** Directory of the store. */
  get path(): string {
    return this.#path;
  }

  /** True once {@link close} was called. */
  get closed(): boolean {
    return this.#closed;
  }

  async #run<T>(f: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new EdgeHubError(ErrorCodes.STORE_CLOSED, `store at ${this.#path} is closed`);
    return call(f);
  }

  /**
   * Appends `messages` to `queue`, resolving to their offsets once durable. With several
   * queues, the messages go to all of them atomically and the result has one array of
   * offsets per queue, in the order given.
   */
  append(queue: string, messages: AppendMessage[]): Promise<number[]>;
  append(queues: string[], messages: AppendMessage[]): Promise<number[][]>;
  async append(queue: string | string[], messages: AppendMessage[]): Promise<number[] | number[][]> {
    const queues = Array.isArray(queue) ? queue : [queue];
    return this.#run(async () => {
      if (queues.length === 0) throw invalid("at least one queue is required");
      for (const q of queues) checkName("queue", q);
      const prepared = prepare(messages);
      const t0 = performance.now();
      const firsts = await this.#native.append(queues, encodeBatch(prepared), prepared.length);
      this.onCommit?.((performance.now() - t0) / 1000);
      const offsets = firsts.map((first) => consecutive(first, prepared.length));
      return Array.isArray(queue) ? offsets : (offsets[0] ?? []);
    });
  }

  /**
   * Appends each part's messages to each of its queues, the parts in order and in one
   * write: every part is stored or none is. For a message that goes to several queues in
   * different forms (other properties or TTL): one part per form. A queue may appear in
   * several parts, not twice in one. `kv` entries are put in the same write (state kept
   * beside the messages). Resolves, per part, to the offsets in each of its queues.
   */
  async appendParts(parts: AppendPart[], kv: KvPut[] = []): Promise<number[][][]> {
    return this.#run(async () => {
      if (!Array.isArray(parts) || parts.length === 0) throw invalid("at least one part is required");
      const queues: string[][] = [];
      const batches: Buffer[] = [];
      const counts: number[] = [];
      for (const p of parts) {
        if (!Array.isArray(p?.queues) || p.queues.length === 0)
          throw invalid("at least one queue is required");
        for (const q of p.queues) checkName("queue", q);
        const prepared = prepare(p.messages);
        queues.push(p.queues);
        batches.push(encodeBatch(prepared));
        counts.push(prepared.length);
      }
      const t0 = performance.now();
      const firsts = await this.#native.appendParts(queues, batches, counts, kv.map(checkPut));
      this.onCommit?.((performance.now() - t0) / 1000);
      return firsts.map((part, i) => part.map((first) => consecutive(first, counts[i] as number)));
    });
  }

  /** Live messages of `queue` in offset order from `from`; never acked or expired ones. */
  async read(queue: string, options: ReadOptions = {}): Promise<StoredMessage[]> {
    return this.#run(async () => {
      checkName("queue", queue);
      const from = options.from ?? 0;
      checkInteger("from", from, 0);
      const limit = options.limit ?? 1000;
      checkInteger("limit", limit, 0);
      const maxBytes = options.maxBytes ?? MAX_READ_BYTES;
      checkInteger("maxBytes", maxBytes, 1);
      const buf = await this.#native.read(
        queue,
        from,
        Math.min(limit, 0xffffffff),
        Math.min(maxBytes, 0xffffffff),
      );
      return decodeRead(buf);
    });
  }

  /** Acknowledges every message of `queue` up to and including `offset`; durable when it resolves. */
  async ack(queue: string, offset: number): Promise<void> {
    return this.#run(async () => {
      checkName("queue", queue);
      checkInteger("offset", offset, 0);
      await this.#native.ack(queue, offset);
    });
  }

  /** Per-queue figures, totals, and the expired and dropped counters. No disk access. */
  async stats(): Promise<StoreStats> {
    return this.#run(async () => this.statsNow());
  }

  /**
   * {@link statsNow}'s figures of one queue, without the others'; undefined for a queue the
   * store does not know. Throws `STORE_CLOSED`.
   */
  queueNow(name: string): QueueStats | undefined {
    return this.#now(() => {
      const q = this.#native.queueStats(name);
      return q ? queueFigures(q, Date.now()) : undefined;
    });
  }

  /**
   * {@link stats}, synchronously: the figures are in memory, so a caller deciding on the
   * ingest path (a sender's share) reads them without waiting a turn. Throws `STORE_CLOSED`.
   */
  statsNow(): StoreStats {
    return this.#now(() => {
      const s = this.#native.stats();
      const now = Date.now();
      return {
        queues: s.queues.map((q) => queueFigures(q, now)),
        count: s.count,
        bytes: s.bytes,
        maxSizeBytes: s.maxSizeBytes,
        expired: s.expired,
        dropped: s.dropped,
      };
    });
  }

  /** A synchronous native call: `STORE_CLOSED` once closed, native errors as {@link EdgeHubError}s. */
  #now<T>(f: () => T): T {
    if (this.#closed) throw new EdgeHubError(ErrorCodes.STORE_CLOSED, `store at ${this.#path} is closed`);
    try {
      return f();
    } catch (err) {
      throw fromNative(err);
    }
  }

  /** Finishes pending writes and releases the files. Safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await call(() => this.#native.close());
  }
}
