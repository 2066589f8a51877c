/**
 * The backlog over time: one sample a second of the store's in-memory figures (no disk
 * access), kept for ten minutes in a fixed ring, from which the drain rate over a moving
 * window, its ETA and the status page's chart are computed.
 */
import type { StoreStats } from "../store/index.js";

/** One sample of the backlog. */
export interface Sample {
  /** When, ms since the epoch. */
  t: number;
  /** Messages waiting in the backlog queues. */
  messages: number;
  bytes: number;
  /** Messages ever appended to the backlog queues (Σ tail offsets). */
  appended: number;
  /** The parent link: true up, false down, null on a root hub. */
  online: boolean | null;
}

/** Rates over the moving window and when the backlog would be gone at that pace. */
export interface DrainRate {
  /** Messages per second stored into the backlog queues. */
  inPerSec: number;
  /** Messages per second that left them (delivered, expired or dropped). */
  outPerSec: number;
  /** Seconds the rates are taken over (shorter right after start). */
  windowSecs: number;
  /** Seconds until the backlog is empty at the net rate; 0 when empty; null when it is not shrinking. */
  etaSecs: number | null;
}

/** What a sample is read from. */
export interface HistorySource {
  stats(): StoreStats;
  online(): boolean | null;
  /** Queues that hold a backlog (waiting for a consumer), not a retention log. */
  isBacklog(queue: string): boolean;
}

/** Samples kept: ten minutes at one a second. */
export const HISTORY_SAMPLES = 600;
/** The window of the drain rate. */
export const RATE_WINDOW_MS = 30_000;

/** The backlog sampled every `intervalMs` into a ring of {@link HISTORY_SAMPLES}. */
export class BacklogHistory {
  readonly #source: HistorySource;
  readonly #ring: Sample[] = [];
  #next = 0;
  readonly #timer: NodeJS.Timeout;

  constructor(source: HistorySource, intervalMs = 1000) {
    this.#source = source;
    this.sample();
    this.#timer = setInterval(() => this.sample(), intervalMs).unref();
  }

  /** Takes a sample now (also called by the timer); a closed store ends the sampling quietly. */
  sample(): void {
    let stats: StoreStats;
    try {
      stats = this.#source.stats();
    } catch {
      return;
    }
    let messages = 0;
    let bytes = 0;
    let appended = 0;
    for (const q of stats.queues) {
      if (!this.#source.isBacklog(q.name)) continue;
      messages += q.count;
      bytes += q.bytes;
      appended += q.tail;
    }
    const s: Sample = { t: Date.now(), messages, bytes, appended, online: this.#source.online() };
    if (this.#ring.length < HISTORY_SAMPLES) this.#ring.push(s);
    else this.#ring[this.#next] = s;
    this.#next = (this.#next + 1) % HISTORY_SAMPLES;
  }

  /** The samples, oldest first. */
  samples(): Sample[] {
    if (this.#ring.length < HISTORY_SAMPLES) return [...this.#ring];
    return [...this.#ring.slice(this.#next), ...this.#ring.slice(0, this.#next)];
  }

  /**
   * The rates between the newest sample and the oldest one within {@link RATE_WINDOW_MS};
   * the ETA of `waiting` messages (the backlog now) at that pace.
   */
  rate(waiting?: number): DrainRate {
    return drainRate(this.samples(), RATE_WINDOW_MS, waiting);
  }

  close(): void {
    clearInterval(this.#timer);
  }
}

/**
 * The rates of `samples` (oldest first) over the last `windowMs`, and the ETA of `waiting`
 * messages (default: the newest sample's backlog).
 */
export function drainRate(samples: readonly Sample[], windowMs: number, waiting?: number): DrainRate {
  const last = samples.at(-1);
  if (!last) return { inPerSec: 0, outPerSec: 0, windowSecs: 0, etaSecs: waiting === 0 ? 0 : null };
  let first = last;
  for (let i = samples.length - 1; i >= 0; i--) {
    const s = samples[i] as Sample;
    if (last.t - s.t > windowMs) break;
    first = s;
  }
  const secs = (last.t - first.t) / 1000;
  // Queues are only added, so Σ tail only grows; a shrinking sum (a queue purged) counts as 0.
  const appended = Math.max(0, last.appended - first.appended);
  const left = Math.max(0, appended - (last.messages - first.messages));
  const inPerSec = secs > 0 ? appended / secs : 0;
  const outPerSec = secs > 0 ? left / secs : 0;
  const net = outPerSec - inPerSec;
  const backlog = waiting ?? last.messages;
  const etaSecs = backlog === 0 ? 0 : net > 0 ? Math.ceil(backlog / net) : null;
  return { inPerSec: round(inPerSec), outPerSec: round(outPerSec), windowSecs: round(secs), etaSecs };
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
