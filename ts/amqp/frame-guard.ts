/**
 * A bound on AMQP frames before rhea reads them. rhea buffers a frame until it has all the
 * bytes its 4-byte size announces, whatever that size (up to 4 GB), so a client could make
 * it hold any amount of memory. This tracks frame boundaries on the raw stream (protocol
 * headers `AMQP` + 4 bytes, then frames `size ++ …`) and reports a frame over the bound, or
 * too small to be a frame, before its bytes pile up. It validates nothing else: that is rhea's.
 */

/** "AMQP": the start of a protocol header, where a frame's size would be over 1 GB. */
const HEADER = 0x414d5150;
/** A frame header is 8 bytes; a size below it is not a frame. */
const MIN_FRAME = 8;

/** Frame boundaries of one connection's input. */
export class FrameGuard {
  readonly #maxFrameBytes: number;
  /** Bytes of the current frame still to pass. */
  #skip = 0;
  /** The start of a frame or protocol header being collected (at most 8 bytes). */
  readonly #head = Buffer.alloc(8);
  #have = 0;

  constructor(maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes;
  }

  /** Follows `chunk`; returns why the stream breaks the bound, or undefined when it does not. */
  push(chunk: Buffer): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.#skip > 0) {
        const n = Math.min(this.#skip, chunk.length - i);
        this.#skip -= n;
        i += n;
        continue;
      }
      this.#head[this.#have++] = chunk[i++] as number;
      if (this.#have < 4) continue;
      const size = this.#head.readUInt32BE(0);
      if (size === HEADER) {
        if (this.#have === 8) this.#have = 0;
        continue;
      }
      if (size < MIN_FRAME) return `frame size ${size} is below ${MIN_FRAME}`;
      if (size > this.#maxFrameBytes) return `frame of ${size} bytes is over ${this.#maxFrameBytes}`;
      this.#skip = size - 4;
      this.#have = 0;
    }
    return undefined;
  }
}
