/**
 * Splits a connection's byte stream into MQTT 3.1.1 packets. PUBLISH, the packet a hub
 * sees millions of, is decoded here without copying its payload, and PUBACK, one per
 * message a hub sends (to devices, and from the parent while draining), in place; every
 * other packet is handed whole to mqtt-packet's parser (which costs a few µs a packet, a
 * fifth of it in its debug logging).
 *
 * Invariants: a packet larger than `maxPacketBytes` is refused from its fixed header,
 * before its bytes are buffered; only the bytes of one incomplete packet are held
 * between reads.
 */
import mqtt, { type IPublishPacket, type Packet, type QoS } from "mqtt-packet";

const PUBLISH = 3;
/** PUBACK's first byte (MQTT 3.1.1 fixes its flags at 0) and remaining length. */
const PUBACK_BYTE = 0x40;
const PUBACK_LENGTH = 2;

/** Why the stream cannot be read further. */
export type ReadFailure =
  | { reason: "malformed-packet"; detail: string }
  | { reason: "packet-too-large"; bytes: number };

/** One connection's packet reader. */
export class PacketReader {
  /** Bytes of an incomplete packet carried over from earlier reads. */
  #rest: Buffer[] = [];
  #restBytes = 0;
  /** Size of that packet once its fixed header is known (0 before): a large packet is joined once, not per read. */
  #need = 0;
  #failed = false;
  readonly #fallback: ReturnType<typeof mqtt.parser>;
  /** MQTT 5 PUBLISH carries properties: decoded by mqtt-packet, not here. */
  readonly #fastPublish: boolean;
  readonly #onPacket: (p: Packet) => void;
  readonly #onFailure: (f: ReadFailure) => void;
  /** Largest whole packet accepted; may change as the connection moves on (CONNECT is small). */
  maxPacketBytes: number;

  constructor(
    maxPacketBytes: number,
    onPacket: (p: Packet) => void,
    onFailure: (f: ReadFailure) => void,
    protocolVersion: 4 | 5 = 4,
  ) {
    this.maxPacketBytes = maxPacketBytes;
    this.#fallback = mqtt.parser({ protocolVersion });
    this.#fastPublish = protocolVersion === 4;
    this.#onPacket = onPacket;
    this.#onFailure = onFailure;
    this.#fallback.on("packet", onPacket);
    this.#fallback.on("error", (err: Error) =>
      this.#fail({ reason: "malformed-packet", detail: err.message }),
    );
  }

  /** Feeds the next bytes read from the socket. */
  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.#restBytes > 0) {
      this.#rest.push(chunk);
      this.#restBytes += chunk.length;
      if (this.#restBytes < this.#need) return;
      buf = Buffer.concat(this.#rest, this.#restBytes);
      this.#rest = [];
      this.#restBytes = 0;
    }
    this.#need = 0;
    let at = 0;
    while (at < buf.length && !this.#failed) {
      // Fixed header: type and flags, then the remaining length in at most four bytes.
      let remaining = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      for (; i < buf.length && i <= at + 4; i++) {
        const b = buf[i] as number;
        remaining += (b & 0x7f) * mul;
        mul *= 128;
        if (b < 0x80) {
          complete = true;
          break;
        }
      }
      if (!complete) {
        if (i > at + 4) {
          this.#fail({ reason: "malformed-packet", detail: "remaining length over 4 bytes" });
          return;
        }
        break;
      }
      const start = i + 1;
      const end = start + remaining;
      if (end - at > this.maxPacketBytes) {
        this.#fail({ reason: "packet-too-large", bytes: end - at });
        return;
      }
      if (end > buf.length) {
        this.#need = end - at;
        break;
      }
      const first = buf[at] as number;
      if (first >> 4 === PUBLISH && this.#fastPublish) this.#publish(first, buf, start, end);
      else if (first === PUBACK_BYTE && remaining === PUBACK_LENGTH && this.#fastPublish)
        this.#onPacket({ cmd: "puback", messageId: buf.readUInt16BE(start) });
      else this.#fallback.parse(buf.subarray(at, end));
      at = end;
    }
    if (at < buf.length && !this.#failed) {
      // Copied so a short tail does not keep the whole read buffer alive.
      this.#rest = [Buffer.from(buf.subarray(at))];
      this.#restBytes = buf.length - at;
    }
  }

  #fail(f: ReadFailure): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#rest = [];
    this.#restBytes = 0;
    this.#onFailure(f);
  }

  #publish(first: number, buf: Buffer, start: number, end: number): void {
    const qos = ((first >> 1) & 3) as QoS | 3;
    if (qos === 3) {
      this.#fail({ reason: "malformed-packet", detail: "PUBLISH with QoS 3" });
      return;
    }
    const topicEnd = start + 2 + (start + 2 <= end ? buf.readUInt16BE(start) : 0);
    const payloadAt = topicEnd + (qos > 0 ? 2 : 0);
    if (start + 2 > end || payloadAt > end) {
      this.#fail({ reason: "malformed-packet", detail: "PUBLISH shorter than its topic" });
      return;
    }
    const packet: IPublishPacket = {
      cmd: "publish",
      // Invalid UTF-8 decodes to U+FFFD, which no topic of IoT Hub's space contains.
      topic: buf.toString("utf8", start + 2, topicEnd),
      payload: buf.subarray(payloadAt, end),
      qos,
      dup: (first & 8) !== 0,
      retain: (first & 1) !== 0,
    };
    if (qos > 0) packet.messageId = buf.readUInt16BE(topicEnd);
    this.#onPacket(packet);
  }
}
