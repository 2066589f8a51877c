/**
 * What identity shares know of records and of their own saved entries: the bytes the
 * store counts for a message (docs/storage-format.md), and the saved JSON read back,
 * checked, a damaged entry counting nothing.
 */
// The record format is the store's (codec.ts); these sizes are internal, not the package's API.
import { propertiesSize, varintLength } from "../store/codec.js";

/** Key (12) and fixed record header (26) of a stored message. */
const RECORD_OVERHEAD = 38;

/** Bytes the store counts for a message with this property block and body. */
export function recordSize(properties: Record<string, string>, bodyLength: number): number {
  const p = propertiesSize(properties);
  return RECORD_OVERHEAD + varintLength(p) + p + bodyLength;
}

/** Extra bytes of a copy carrying `$.in = input` (beside properties that have no `$.in`). */
export function inputBytes(input: string | undefined): number {
  if (input === undefined) return 0;
  const n = Buffer.byteLength(input);
  // "$.in" with its length, the value with its length; a block-length varint growing by a
  // byte is not counted (documented bound: at most 2 bytes a copy).
  return 5 + varintLength(n) + n;
}

/** An identity as saved: the offsets it covers, and per queue `[total, released, marks]`. */
export interface SavedIdentity {
  covered: Map<string, number>;
  queues: Record<string, [number, number, number[]]>;
}

/** Saved JSON; undefined when damaged (a damaged entry must not keep the hub from starting). */
function parseJson(bytes: Buffer): unknown {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return undefined;
  }
}

/** Queue → offset, from saved JSON; anything else in it is ignored. */
function offsets(v: unknown): Map<string, number> {
  const out = new Map<string, number>();
  if (typeof v === "object" && v !== null)
    for (const [k, n] of Object.entries(v)) if (Number.isSafeInteger(n) && n >= 0) out.set(k, n);
  return out;
}

/** The saved per-queue offsets. */
export function parseCovered(bytes: Buffer): Map<string, number> {
  return offsets(parseJson(bytes));
}

/** A saved identity, checked: a damaged entry counts nothing rather than garbage. */
export function parseIdentity(bytes: Buffer): SavedIdentity {
  const v = parseJson(bytes);
  const o = (typeof v === "object" && v !== null ? v : {}) as { covered?: unknown; queues?: unknown };
  const queues: SavedIdentity["queues"] = Object.create(null);
  if (typeof o.queues === "object" && o.queues !== null) {
    for (const [name, q] of Object.entries(o.queues)) {
      if (!Array.isArray(q) || q.length !== 3) continue;
      const [total, released, marks] = q as unknown[];
      if (!Number.isSafeInteger(total) || !Number.isSafeInteger(released) || !Array.isArray(marks)) continue;
      if (!marks.every((n) => Number.isSafeInteger(n)) || marks.length % 2 !== 0) continue;
      queues[name] = [total as number, released as number, marks as number[]];
    }
  }
  return { covered: offsets(o.covered), queues };
}
