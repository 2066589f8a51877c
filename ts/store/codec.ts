/**
 * Encoding between the facade and the add-on: property blocks (the on-disk layout of
 * `docs/storage-format.md`), append batches and read results (transfer formats of
 * `crates/node/src/lib.rs`, little-endian).
 */
import { record } from "../json.js";

/** Header bytes per message in an append batch: ttl f64, props_len u32, body_len u32. */
const APPEND_HEADER = 16;
/** Header bytes per message in a read result: offset, enqueuedAt, expiresAt (f64), two u32. */
const READ_HEADER = 32;
/** TTL value meaning "the store's default". */
export const DEFAULT_TTL = -2;

/** Bytes of `n` as a LEB128 varint (the record format's length prefixes). */
export function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    len++;
  }
  return len;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    buf[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[at++] = n;
  return at;
}

/**
 * Bytes of the property block of `props` (0 for none). Throws a `TypeError` naming the
 * first property whose value is not a string.
 */
export function propertiesSize(props: Record<string, string> | undefined): number {
  if (!props) return 0;
  const keys = Object.keys(props);
  if (keys.length === 0) return 0;
  let size = varintLength(keys.length);
  for (const k of keys) {
    const v = props[k];
    if (typeof v !== "string") throw new TypeError(`property ${JSON.stringify(k)} must be a string`);
    const kl = Buffer.byteLength(k);
    const vl = Buffer.byteLength(v);
    size += varintLength(kl) + kl + varintLength(vl) + vl;
  }
  return size;
}

/** Writes the property block of `props` (checked by {@link propertiesSize}) at `at`; returns the end. */
function writeProperties(out: Buffer, at: number, props: Record<string, string>): number {
  const keys = Object.keys(props);
  at = writeVarint(out, at, keys.length);
  for (const k of keys) {
    const v = props[k] as string;
    at = writeVarint(out, at, Buffer.byteLength(k));
    at += out.write(k, at);
    at = writeVarint(out, at, Buffer.byteLength(v));
    at += out.write(v, at);
  }
  return at;
}

/**
 * Decodes a property block written by {@link encodeBatch} (validated by the store) into a
 * null-prototype record: any key a client sent, `__proto__` included, comes back as data.
 */
export function decodeProperties(buf: Buffer, start: number, end: number): Record<string, string> {
  const out = record<string>();
  if (start === end) return out;
  let at = start;
  const varint = (): number => {
    let x = 0;
    let mul = 1;
    for (;;) {
      const b = buf[at++] ?? 0;
      x += (b & 0x7f) * mul;
      if (b < 0x80) return x;
      mul *= 128;
    }
  };
  const text = (): string => {
    const len = varint();
    const s = buf.toString("utf8", at, at + len);
    at += len;
    return s;
  };
  const count = varint();
  for (let i = 0; i < count; i++) {
    const k = text();
    out[k] = text();
  }
  return out;
}

/** One message ready for {@link encodeBatch}: checked, with its property block's size. */
export interface PreparedMessage {
  body: Uint8Array;
  properties: Record<string, string> | undefined;
  propsSize: number;
  ttl: number;
}

/** Packs messages into one append batch for a single native call, property blocks written in place. */
export function encodeBatch(messages: PreparedMessage[]): Buffer {
  let size = 0;
  for (const m of messages) size += APPEND_HEADER + m.propsSize + m.body.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const m of messages) {
    out.writeDoubleLE(m.ttl, at);
    out.writeUInt32LE(m.propsSize, at + 8);
    out.writeUInt32LE(m.body.length, at + 12);
    at += APPEND_HEADER;
    if (m.propsSize > 0) at = writeProperties(out, at, m.properties as Record<string, string>);
    out.set(m.body, at);
    at += m.body.length;
  }
  return out;
}

/** A message as {@link MessageStore.read} returns it. */
export interface StoredMessage {
  /** Offset in its queue. */
  offset: number;
  /** The body; a view into the read's buffer, not a copy. */
  body: Buffer;
  /** Application properties. */
  properties: Record<string, string>;
  /** When the message was appended, ms since the Unix epoch. */
  enqueuedAt: number;
  /** When it expires, ms since the Unix epoch; `null` if never. */
  expiresAt: number | null;
}

/** Unpacks a read result. Bodies are views into `buf` (no copies). */
export function decodeRead(buf: Buffer): StoredMessage[] {
  const out: StoredMessage[] = [];
  let at = 0;
  while (at < buf.length) {
    const offset = buf.readDoubleLE(at);
    const enqueuedAt = buf.readDoubleLE(at + 8);
    const expires = buf.readDoubleLE(at + 16);
    const plen = buf.readUInt32LE(at + 24);
    const blen = buf.readUInt32LE(at + 28);
    const p0 = at + READ_HEADER;
    const b0 = p0 + plen;
    out.push({
      offset,
      body: buf.subarray(b0, b0 + blen),
      properties: decodeProperties(buf, p0, b0),
      enqueuedAt,
      expiresAt: expires < 0 ? null : expires,
    });
    at = b0 + blen;
  }
  return out;
}
