/**
 * The router: where a device's or module's message goes, by the hub's routes
 * ({@link RouteTable}): `$upstream` on an edge hub (the built-in events queue on a root),
 * module inputs, devices. A message routed to several endpoints is appended to all of
 * them in one store call where it can be (same TTL, no input name), so they are stored
 * together. Appends made in one event-loop turn, from every connection, go to the store
 * together and share one group commit; the message is acknowledged once every copy is
 * durable.
 */
import { EventEmitter } from "node:events";
import type { AppendMessage, MessageStore } from "../store/index.js";
import { RecentIds } from "./recent-ids.js";
import type { Destination, RouteTable } from "./route-table.js";

/** A device-to-cloud message as the protocol head hands it over. */
export interface Telemetry {
  deviceId: string;
  moduleId?: string;
  body: Buffer;
  /** Application properties and `$.`-prefixed system properties from the topic; handed over to
   * the router, which stamps the sender's identity into it. */
  properties: Record<string, string>;
  /** Forwarded by a child hub on the sender's behalf: a resend of a stored `$.mid` is not stored again. */
  forwarded?: boolean;
}

/** Called once a message is durable (`err` null) or was refused. */
export type Accepted = (err: unknown) => void;

/** Stored with a module-input copy: the input's name. */
export const INPUT_PROPERTY = "$.in";

/** A message waiting for all its copies. */
interface Waiting {
  left: number;
  failed: unknown;
  done: Accepted;
}

/** Messages of one turn going to the same queues with the same TTL and input. */
interface Group {
  queues: string[];
  messages: AppendMessage[];
  waiting: Waiting[];
}

/** Routes telemetry into the store. Emits `stored` (queue) after each append. */
export class Router extends EventEmitter<{ stored: [queue: string] }> {
  readonly #store: MessageStore;
  #table: RouteTable;
  /** TTL of what goes to the upstream queue when its route gives none (the events retention on a root). */
  readonly #upstreamTtl: number | undefined;
  /** This turn's appends, in order; consecutive messages for the same queues, TTL and input share one. */
  #groups: Array<Group & { ttl: number | undefined; input: string | undefined }> = [];
  readonly #recent = new RecentIds();

  constructor(store: MessageStore, table: RouteTable, upstreamTtlSecs?: number) {
    super();
    this.setMaxListeners(0);
    this.#store = store;
    this.#table = table;
    this.#upstreamTtl = upstreamTtlSecs;
  }

  /** Replaces the routes (the parent's `$edgeHub` settings changed); later messages follow them. */
  setRoutes(table: RouteTable): void {
    this.#table = table;
  }

  /** Messages no route took, since start (or since the routes last changed). */
  get unrouted(): number {
    return this.#table.unrouted;
  }

  /**
   * Stores `t`, stamped with the identity that sent it, everywhere its routes say; `done` is
   * called once every copy is durable (right away when no route takes it).
   * A callback, not a promise: this runs once per message on the ingest path.
   */
  accept(t: Telemetry, done: Accepted): void {
    const mid = t.forwarded ? t.properties["$.mid"] : undefined;
    if (mid !== undefined) {
      const sender = t.moduleId === undefined ? t.deviceId : `${t.deviceId}/${t.moduleId}`;
      if (this.#recent.has(sender, mid)) {
        done(null);
        return;
      }
      // Remembered once durable: a resend arriving before then is stored again (at least once).
      const inner = done;
      done = (err) => {
        if (!err) this.#recent.add(sender, mid);
        inner(err);
      };
    }
    // The connection's identity is the hub's to state: never taken from the client's bag.
    // The bag is this message's own object (parsed from its topic), so it is stamped in place.
    const properties = t.properties;
    properties["$.cdid"] = t.deviceId;
    if (t.moduleId !== undefined) properties["$.cmid"] = t.moduleId;
    else delete properties["$.cmid"];
    const destinations = this.#table.destinations(t);
    if (destinations.length === 0) {
      done(null);
      return;
    }
    if (this.#groups.length === 0) setImmediate(() => this.#flush());
    if (destinations.length === 1) {
      // The common case: one endpoint, no grouping to work out.
      const d = destinations[0] as Destination;
      this.#add([d.queue], this.#ttl(d), d.input, t, { left: 1, failed: null, done });
      return;
    }
    // Endpoints with one TTL share one append, so they are stored together. A module input's
    // copy carries its input name: with one input among the endpoints every copy carries it
    // (the other endpoints ignore it); each further input is an append of its own.
    const inputs = new Set(destinations.filter((d) => d.input !== undefined).map((d) => d.input));
    const shared = inputs.size === 1 ? [...inputs][0] : undefined;
    const units = new Map<string, { queues: string[]; ttl: number | undefined; input: string | undefined }>();
    for (const d of destinations) {
      const ttl = this.#ttl(d);
      const own = d.input === undefined || d.input === shared;
      const key = own ? `ttl:${ttl}` : `in:${d.queue}:${d.input}:${ttl}`;
      const u = units.get(key);
      if (u) u.queues.push(d.queue);
      else units.set(key, { queues: [d.queue], ttl, input: own ? shared : d.input });
    }
    const waiting: Waiting = { left: units.size, failed: null, done };
    for (const u of units.values()) this.#add(u.queues, u.ttl, u.input, t, waiting);
  }

  #ttl(d: Destination): number | undefined {
    return d.ttlSecs ?? (d.clientId === undefined ? this.#upstreamTtl : undefined);
  }

  #add(queues: string[], ttl: number | undefined, input: string | undefined, t: Telemetry, w: Waiting): void {
    // Only the last append of the turn is joined: appends are issued in order, so every
    // queue gets its messages in the order they arrived.
    let g = this.#groups.at(-1);
    const same = g !== undefined && g.ttl === ttl && g.input === input && sameQueues(g.queues, queues);
    if (!g || !same) {
      g = { queues, ttl, input, messages: [], waiting: [] };
      this.#groups.push(g);
    }
    const properties = input === undefined ? t.properties : { ...t.properties, [INPUT_PROPERTY]: input };
    g.messages.push(
      ttl === undefined ? { body: t.body, properties } : { body: t.body, properties, ttlSecs: ttl },
    );
    g.waiting.push(w);
  }

  #flush(): void {
    const groups = this.#groups;
    this.#groups = [];
    for (const g of groups) {
      this.#store.append(g.queues, g.messages).then(
        () => {
          for (const w of g.waiting) settle(w, null);
          for (const q of g.queues) this.emit("stored", q);
        },
        (err: unknown) => {
          for (const w of g.waiting) settle(w, err);
        },
      );
    }
  }
}

function sameQueues(a: string[], b: string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function settle(w: Waiting, err: unknown): void {
  if (err && !w.failed) w.failed = err;
  if (--w.left === 0) w.done(w.failed ?? null);
}
