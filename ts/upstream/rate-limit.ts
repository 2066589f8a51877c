/**
 * The cap on messages sent upstream per second (slow uplinks): a token bucket refilled at
 * the rate, holding a tenth of a second's worth, so a slow link is never handed a second of
 * traffic at once.
 */
export class RateLimit {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #at = Date.now();
  #timer: NodeJS.Timeout | undefined;
  readonly #resumes: Array<() => void> = [];

  constructor(perSecond: number) {
    this.#rate = perSecond;
    this.#burst = Math.max(1, Math.ceil(perSecond / 10));
    this.#tokens = this.#burst;
  }

  /** Calls `resume` when tokens are back after a refusal (one cap can serve several senders). */
  onResume(resume: () => void): void {
    this.#resumes.push(resume);
  }

  /** Takes a token if there is one; otherwise false, and `resume` is called once there is. */
  take(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#at) / 1000) * this.#rate);
    this.#at = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return true;
    }
    if (!this.#timer) {
      this.#timer = setTimeout(
        () => {
          this.#timer = undefined;
          for (const resume of this.#resumes) resume();
        },
        Math.ceil(((1 - this.#tokens) / this.#rate) * 1000),
      );
      this.#timer.unref();
    }
    return false;
  }

  stop(): void {
    clearTimeout(this.#timer);
  }
}
