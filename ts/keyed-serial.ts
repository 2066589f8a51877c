/**
 * Runs asynchronous work one at a time per key (a twin's read-modify-write, the C2D sends
 * to one device), in the order it was asked for; different keys run concurrently. A key
 * has an entry only while work for it is under way, so the map is bounded by the work in
 * flight, not by the keys ever seen.
 */
export class KeyedSerial {
  readonly #last = new Map<string, Promise<unknown>>();

  /** Runs `f` once the work asked for `key` before it has settled (either way). */
  run<T>(key: string, f: () => Promise<T>): Promise<T> {
    const prev = this.#last.get(key) ?? Promise.resolve();
    const next = prev.then(f, f);
    this.#last.set(key, next);
    void next
      .finally(() => {
        if (this.#last.get(key) === next) this.#last.delete(key);
      })
      .catch(() => undefined);
    return next;
  }
}
