/**
 * A lane: the messages of one sender (or of everything, over a broker bridge) waiting for
 * one link, in offset order. Live messages (stored after a live-first resume) go before
 * the backlog; each part stays in offset order, and a message whose send failed goes back
 * to its place.
 */
import type { StoredMessage } from "../store/index.js";
import type { Link } from "./link.js";

/** Offset-ordered messages with a moving head; taken slots are cleared so sent messages (and the read buffers their bodies point into) can be collected. */
class Run {
  items: (StoredMessage | undefined)[] = [];
  head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  shift(): StoredMessage | undefined {
    const m = this.items[this.head];
    if (m === undefined) return undefined;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return m;
  }

  /** Puts `m` back in offset order (it was taken before the ones waiting). */
  putBack(m: StoredMessage): void {
    const rest = this.items.slice(this.head);
    let at = 0;
    while (at < rest.length && (rest[at] as StoredMessage).offset < m.offset) at++;
    rest.splice(at, 0, m);
    this.items = rest;
    this.head = 0;
  }

  take(): StoredMessage[] {
    const all = this.items.slice(this.head) as StoredMessage[];
    this.items = [];
    this.head = 0;
    return all;
  }
}

/** One lane's state. */
export class Lane {
  readonly name: string;
  readonly link: Link;
  readonly #live = new Run();
  readonly #backlog = new Run();
  /** Offsets from here on are live (sent before the backlog); Infinity in stored order. */
  liveFrom = Number.POSITIVE_INFINITY;
  inflight = 0;
  /** The parent's refusals of this lane's login in a row. */
  refusals = 0;
  /** Its link went down and the first of its sends to fail was seen (reset when it is up). */
  failing = false;
  /** Cancels the timer that closes the lane's link when it stays idle. */
  cancelIdle: (() => void) | undefined;
  readonly onUp: () => void;
  readonly onRefused: (code: number) => void;

  constructor(
    name: string,
    link: Link,
    onUp: (lane: Lane) => void,
    onRefused: (lane: Lane, code: number) => void,
  ) {
    this.name = name;
    this.link = link;
    this.onUp = () => onUp(this);
    this.onRefused = (code) => onRefused(this, code);
  }

  /** Messages waiting to be sent. */
  get waiting(): number {
    return this.#live.size + this.#backlog.size;
  }

  push(m: StoredMessage): void {
    (m.offset >= this.liveFrom ? this.#live : this.#backlog).items.push(m);
  }

  /** The next message to send: live first. */
  next(): StoredMessage | undefined {
    return this.#live.shift() ?? this.#backlog.shift();
  }

  /** A sent message came back unacknowledged: it goes again before those after it. */
  putBack(m: StoredMessage): void {
    (m.offset >= this.liveFrom ? this.#live : this.#backlog).putBack(m);
  }

  /** Everything waiting, taken out (backlog first, each in offset order). */
  takeAll(): StoredMessage[] {
    return [...this.#backlog.take(), ...this.#live.take()];
  }

  /** Lets go of everything waiting and in flight (they stay stored). */
  clear(): void {
    this.takeAll();
    this.inflight = 0;
  }
}
