/**
 * Time for the queue consumer, injected so its state table is tested without real timers:
 * {@link systemClock} in the hub, a manual clock in tests.
 */

/** What the consumer asks of time. */
export interface Clock {
  /** Milliseconds since the Unix epoch (message expiry compares with this). */
  now(): number;
  /**
   * Calls `fn` once after `ms` (0: after the current turn, when what it gathered is whole);
   * returns a cancel. Never keeps the process alive.
   */
  after(ms: number, fn: () => void): () => void;
}

/** Real time: `Date.now`, `setImmediate` for 0, unref'd `setTimeout` otherwise. */
export const systemClock: Clock = {
  now: () => Date.now(),
  after(ms, fn) {
    if (ms <= 0) {
      const i = setImmediate(fn);
      return () => clearImmediate(i);
    }
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};
