/**
 * The event loop's delay in this process, measured in fixed windows (Node's
 * monitorEventLoopDelay): what the hub's status reports, so an operator or a soak run sees
 * whether the loop keeps up over hours, not only since start.
 */
import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";

/** Event-loop delay over one window, in milliseconds. */
export interface LagWindow {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  windowSecs: number;
}

export class EventLoopLag {
  readonly #histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  readonly #timer: NodeJS.Timeout;
  #last: LagWindow | undefined;

  constructor(readonly windowSecs = 5) {
    this.#histogram.enable();
    this.#timer = setInterval(() => {
      this.#last = this.#read();
      this.#histogram.reset();
    }, windowSecs * 1000).unref();
  }

  /** The last full window; before the first one ends, what was measured since start. */
  get current(): LagWindow {
    return this.#last ?? this.#read();
  }

  close(): void {
    clearInterval(this.#timer);
    this.#histogram.disable();
  }

  #read(): LagWindow {
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    const h = this.#histogram;
    return {
      p50Ms: ms(h.percentile(50)),
      p99Ms: ms(h.percentile(99)),
      maxMs: ms(h.max),
      windowSecs: this.windowSecs,
    };
  }
}
