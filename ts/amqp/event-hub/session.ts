/**
 * One connection's Event Hubs tokens: each put-token covers its audience (and what is under
 * it) until it expires, as Event Hubs clients put one per link and renew it before it
 * expires. A link is let in only under a valid token, and detached with
 * `amqp:unauthorized-access` once no token covers it any more.
 */
import type { Receiver, Sender } from "rhea";
import { audiencePath } from "./event-hub.js";

/** Audiences one connection may hold tokens for (a client puts one per link). */
const MAX_AUDIENCES = 32;

type Link = Sender | Receiver;

interface Held {
  /** The audience path the link needs covered. */
  path: string;
  /** Called once when the link's role ends (detached here, or gone). */
  ended: () => void;
}

/** The Event Hubs tokens of one connection and the links they let in. */
export class EventHubSession {
  /** Audience path → expiry (ms). */
  readonly #tokens = new Map<string, number>();
  readonly #links = new Map<Link, Held>();
  /** Readers (partition links) open on this connection. */
  readers = 0;
  /** `$management` answer links (our senders) by the address the client reads answers at. */
  readonly replies = new Map<string, Sender>();
  #timer: NodeJS.Timeout | undefined;
  readonly #expired: () => void;

  /** @param expired called once every token expired and their links were detached. */
  constructor(expired: () => void) {
    this.#expired = expired;
  }

  /** A token for `audience` valid until `expiresAt` (ms); false when the connection holds too many. */
  put(audience: string, expiresAt: number): boolean {
    const path = audiencePath(audience);
    this.#prune();
    if (!this.#tokens.has(path) && this.#tokens.size >= MAX_AUDIENCES) return false;
    this.#tokens.set(path, expiresAt);
    this.#arm();
    return true;
  }

  /** True when a valid token covers `audience` (its own, or one of an ancestor). */
  covers(audience: string): boolean {
    const path = audiencePath(audience);
    const now = Date.now();
    for (const [held, at] of this.#tokens)
      if (at > now && (path === held || path.startsWith(`${held}/`))) return true;
    return false;
  }

  /** `link` serves `audience`; `ended` is called once when it goes. */
  adopt(link: Link, audience: string, ended: () => void): void {
    this.#links.set(link, { path: audiencePath(audience), ended });
  }

  /** `link` went away. */
  drop(link: Link): void {
    const held = this.#links.get(link);
    this.#links.delete(link);
    held?.ended();
  }

  #prune(): void {
    const now = Date.now();
    for (const [path, at] of this.#tokens) if (at <= now) this.#tokens.delete(path);
  }

  /** A timer at the next expiry. */
  #arm(): void {
    clearTimeout(this.#timer);
    const next = Math.min(...this.#tokens.values());
    if (!Number.isFinite(next)) return;
    // setTimeout holds at most ~24.8 days: a later expiry is looked at again then.
    this.#timer = setTimeout(() => this.#expire(), Math.min(Math.max(0, next - Date.now()), 2 ** 31 - 1));
    this.#timer.unref();
  }

  /** Links no valid token covers any more are detached. */
  #expire(): void {
    this.#prune();
    for (const [link, held] of [...this.#links]) {
      if (this.covers(held.path)) continue;
      this.#links.delete(link);
      if (!link.is_closed())
        link.close({ condition: "amqp:unauthorized-access", description: "token-expired" });
      held.ended();
    }
    if (this.#tokens.size === 0) {
      this.close();
      this.#expired();
    } else this.#arm();
  }

  /** The connection closed: every link's role ends. */
  close(): void {
    clearTimeout(this.#timer);
    const held = [...this.#links.values()];
    this.#links.clear();
    for (const h of held) h.ended();
  }
}
