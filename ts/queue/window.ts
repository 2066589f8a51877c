/**
 * The consumer's window: messages handed to the target and not done yet, and their bytes.
 * The count of messages read past the checkpoint is bounded by the consumer separately
 * (a message not done holds back the checkpoint, and with it everything read after it).
 */
import type { StoredMessage } from "../store/index.js";

/** What a message held in memory counts for: its body and a fixed allowance for the rest. */
export function heldBytes(m: StoredMessage): number {
  return m.body.length + 64;
}

/** Messages handed over and not done, and their bytes. */
export class Window {
  count = 0;
  bytes = 0;
  readonly maxBytes: number;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  /** Bytes that may still be read (0 when full). */
  get freeBytes(): number {
    return Math.max(0, this.maxBytes - this.bytes);
  }

  take(m: StoredMessage): void {
    this.count++;
    this.bytes += heldBytes(m);
  }

  give(m: StoredMessage): void {
    this.count--;
    this.bytes -= heldBytes(m);
  }

  /** Lets go of everything (a pause that forgets what was read). */
  clear(): void {
    this.count = 0;
    this.bytes = 0;
  }
}
