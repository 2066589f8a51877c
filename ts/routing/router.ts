/**
 * The router: where a device's or module's message goes, by the hub's routes
 * ({@link RouteTable}): `$upstream` on an edge hub (the built-in events queue on a root),
 * module inputs, devices. A message routed to several endpoints is appended to all of
 * them in one store call (one part per form it is stored in: TTL, input name), so the
 * store keeps every copy or none. Appends made in one event-loop turn, from every
 * connection, go to the store together and share one group commit; the message is
 * acknowledged once its copies are durable.
 */
import { EventEmitter } from "node:events";
import type { AppendMessage, MessageStore } from "../store/index.js";
import { FORWARD_ID, INPUT_PROPERTY } from "../vocabulary.js";
import type { Charge, IdentityShares } from "./identity-shares.js";
import { RecentIds } from "./recent-ids.js";
import type { Destination, RouteTable } from "./route-table.js";
import { inputBytes, recordSize } from "./share-records.js";

/** A device-to-cloud message as the protocol head hands it over. */
export interface Telemetry {
  deviceId: string;
  moduleId?: string;
  body: Buffer;
  /** Application properties and `$.`-prefixed system properties from the topic; handed over to
   * the router, which stamps the sender's identity into it. */
  properties: Record<string, string>;
  /**
   * Forwarded by a child hub on the sender's behalf: a resend of a message it already
   * forwarded (same {@link FORWARD_ID}) is not stored again.
   */
  forwarded?: boolean;
  /** A twin change notification (routes with `/twinChangeNotifications` or `/*` take it). */
  twinChange?: boolean;
}

/** Called once a message is durable (`err` null) or was refused. */
export type Accepted = (err: unknown) => void;

/** Messages at the end of each queue whose ids {@link Router.recall} remembers. */
const RECALL = 4096;

/**
 * Longer forwarder ids are stored but not remembered: ours are at most ~170 characters (a
 * 128-character device id, 12 of incarnation, queue, offset), and what the resend filter
 * holds per sender stays small.
 */
const MAX_FORWARD_ID = 192;

/** Messages of one turn stored in the same form in the same queues. */
interface Part {
  queues: string[];
  ttl: number | undefined;
  input: string | undefined;
  messages: AppendMessage[];
}

/**
 * One store call of a turn: consecutive messages with the same layout of parts (most often
 * one part: one queue, or upstream and one module input). Every copy of a message is in the
 * same call, so the store keeps them all or none.
 */
interface Group {
  parts: Part[];
  done: Accepted[];
  /** What each message costs its sender's share (identity shares on), by `done`'s index. */
  charges: Array<Charge | undefined> | undefined;
}

/** Where one message goes, in as few parts as its forms allow. */
type Layout = Array<{ queues: string[]; ttl: number | undefined; input: string | undefined }>;

/** Routes telemetry into the store. Emits `stored` (queue) after each append. */
export class Router extends EventEmitter<{ stored: [queue: string] }> {
  readonly #store: MessageStore;
  #table: RouteTable;
  /** TTL of what goes to the upstream queue when its route gives none (the events retention on a root). */
  readonly #upstreamTtl: number | undefined;
  /** This turn's store calls, in order; consecutive messages with the same layout share one. */
  #groups: Group[] = [];
  /** Store calls made and not yet answered (their callers wait for them). */
  readonly #writing = new Set<Promise<number[][][]>>();
  readonly #recent = new RecentIds();
  /** Per-identity shares of the store quota; undefined when off. */
  #shares: IdentityShares | undefined;

  constructor(store: MessageStore, table: RouteTable, upstreamTtlSecs?: number) {
    super();
    this.setMaxListeners(0);
    this.#store = store;
    this.#table = table;
    this.#upstreamTtl = upstreamTtlSecs;
  }

  /**
   * Remembers the forwarder ids of the messages still stored at the end of the queues
   * `recalled` names (upstream queues, module inputs), newest last, so a child hub's resend
   * after this hub restarted is not stored twice. Call before clients connect.
   */
  async recall(recalled: (queue: string) => boolean): Promise<void> {
    const seen: Array<{ at: number; sender: string; fid: string }> = [];
    for (const q of (await this.#store.stats()).queues) {
      if (q.count === 0 || !recalled(q.name)) continue;
      for (let next = Math.max(q.head, q.tail - RECALL); next < q.tail; ) {
        const batch = await this.#store.read(q.name, { from: next, limit: 1000 });
        const last = batch.at(-1);
        if (!last) break;
        for (const m of batch) {
          const { [FORWARD_ID]: fid, "$.cdid": device, "$.cmid": module } = m.properties;
          if (fid === undefined || device === undefined) continue;
          seen.push({ at: m.enqueuedAt, sender: module === undefined ? device : `${device}/${module}`, fid });
        }
        next = last.offset + 1;
      }
    }
    // In the order they were stored: what each sender sent last is what it may resend.
    seen.sort((a, b) => a.at - b.at);
    for (const { sender, fid } of seen) this.#recent.add(sender, fid);
  }

  /** Replaces the routes (the parent's `$edgeHub` settings changed); later messages follow them. */
  setRoutes(table: RouteTable): void {
    this.#table = table;
  }

  /**
   * Routes a twin change notification of `clientId`: reported patch `patch`, now reported
   * `version`, as IoT Edge does for `/twinChangeNotifications` routes (body: the patch as
   * JSON). Nothing is built unless a route may take it.
   */
  twinChanged(clientId: string, patch: object, version: number, done: Accepted): void {
    if (!this.#table.takesTwinChanges) {
      done(null);
      return;
    }
    const [deviceId, moduleId] = clientId.split("/") as [string, string | undefined];
    const properties: Record<string, string> = {
      "$.ct": "application/json",
      "$.ce": "utf-8",
      "iothub-message-schema": "twinChangeNotification",
      opType: "updateTwin",
      version: String(version),
    };
    const body = Buffer.from(JSON.stringify(patch));
    this.accept(
      moduleId === undefined
        ? { deviceId, body, properties, twinChange: true }
        : { deviceId, moduleId, body, properties, twinChange: true },
      done,
    );
  }

  /** Charges what is stored to its sender and refuses senders past their share; undefined: off. */
  setShares(shares: IdentityShares | undefined): void {
    this.#shares = shares;
  }

  /**
   * Resolves once every message accepted so far is answered: stored (its `done` called) or
   * refused. A clean stop waits for this before it closes connections, so what was being
   * stored gets its PUBACK.
   */
  async settled(): Promise<void> {
    while (this.#groups.length > 0 || this.#writing.size > 0) {
      if (this.#writing.size > 0) await Promise.allSettled([...this.#writing]);
      else await new Promise<void>((resolve) => setImmediate(resolve));
    }
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
    // Only a resend of the same stored message is dropped: the key is the child hub's
    // forwarder id, never the device's own `$.mid` (devices reuse those).
    const fid = t.properties[FORWARD_ID];
    if (fid !== undefined) {
      if (!t.forwarded) delete t.properties[FORWARD_ID];
      else if (fid.length <= MAX_FORWARD_ID) {
        const sender = senderOf(t);
        if (this.#recent.has(sender, fid)) {
          done(null);
          return;
        }
        // Remembered once durable: a resend arriving before then is stored again (at least once).
        const inner = done;
        done = (err) => {
          if (!err) this.#recent.add(sender, fid);
          inner(err);
        };
      }
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
      // The common case: one endpoint, no layout to work out.
      const d = destinations[0] as Destination;
      const ttl = this.#ttl(d);
      const g = this.#groups.at(-1);
      const p = g?.parts.length === 1 ? g.parts[0] : undefined;
      // Joining the last call allocates no layout (the ingest path with one route).
      const joins =
        g && p && p.ttl === ttl && p.input === d.input && p.queues.length === 1 && p.queues[0] === d.queue;
      const layout = joins ? g.parts : [{ queues: [d.queue], ttl, input: d.input }];
      const charge = this.#charge(layout, t, done);
      if (charge === false) return;
      if (joins) this.#push(g, t, done, charge);
      else this.#add(layout, t, done, charge);
      return;
    }
    // Endpoints with one TTL share one part, stored in one form. A module input's copy
    // carries its input name: with one input among the endpoints every copy carries it
    // (the other endpoints ignore it); each further input is a part of its own.
    const inputs = new Set(destinations.filter((d) => d.input !== undefined).map((d) => d.input));
    const shared = inputs.size === 1 ? [...inputs][0] : undefined;
    const parts = new Map<string, Layout[number]>();
    for (const d of destinations) {
      const ttl = this.#ttl(d);
      const own = d.input === undefined || d.input === shared;
      const key = own ? `ttl:${ttl}` : `in:${d.queue}:${d.input}:${ttl}`;
      const p = parts.get(key);
      if (p) p.queues.push(d.queue);
      else parts.set(key, { queues: [d.queue], ttl, input: own ? shared : d.input });
    }
    const layout = [...parts.values()];
    const charge = this.#charge(layout, t, done);
    if (charge === false) return;
    this.#add(layout, t, done, charge);
  }

  /**
   * Identity shares: reserves what `t`'s copies will take of its sender's share, before
   * anything is queued. False when the sender is past its share (`done` is told why);
   * undefined when shares are off.
   */
  #charge(layout: Layout, t: Telemetry, done: Accepted): Charge | false | undefined {
    const shares = this.#shares;
    if (!shares) return undefined;
    const base = recordSize(t.properties, t.body.length);
    let total = 0;
    for (const l of layout) total += (base + inputBytes(l.input)) * l.queues.length;
    const sender = senderOf(t);
    const charge = shares.admit(sender, base, total);
    if (charge === undefined) done(shares.refusal(sender));
    return charge ?? false;
  }

  #ttl(d: Destination): number | undefined {
    return d.ttlSecs ?? (d.clientId === undefined ? this.#upstreamTtl : undefined);
  }

  #add(layout: Layout, t: Telemetry, done: Accepted, charge: Charge | undefined): void {
    // Only the last call of the turn is joined: calls are issued in order, so every
    // queue gets its messages in the order they arrived.
    let g = this.#groups.at(-1);
    if (!g || !sameLayout(g.parts, layout)) {
      g = { parts: layout.map((l) => ({ ...l, messages: [] })), done: [], charges: undefined };
      this.#groups.push(g);
    }
    this.#push(g, t, done, charge);
  }

  #push(g: Group, t: Telemetry, done: Accepted, charge: Charge | undefined): void {
    for (const p of g.parts) {
      const properties =
        p.input === undefined ? t.properties : { ...t.properties, [INPUT_PROPERTY]: p.input };
      p.messages.push(
        p.ttl === undefined ? { body: t.body, properties } : { body: t.body, properties, ttlSecs: p.ttl },
      );
    }
    if (charge) {
      g.charges ??= new Array<Charge | undefined>(g.done.length);
      g.charges.push(charge);
    } else g.charges?.push(undefined);
    g.done.push(done);
  }

  #flush(): void {
    const groups = this.#groups;
    this.#groups = [];
    for (const g of groups) {
      const [first] = g.parts as [Part];
      const stored: Promise<number[][][]> =
        g.parts.length === 1
          ? this.#store.append(first.queues, first.messages).then((offsets) => [offsets])
          : this.#store.appendParts(g.parts);
      const { charges } = g;
      const shares = charges?.find((c) => c !== undefined)?.of;
      stored.then(
        (offsets) => {
          if (charges) shares?.stored(charges, g.parts, offsets);
          for (const done of g.done) done(null);
          for (const p of g.parts) for (const q of p.queues) this.emit("stored", q);
        },
        (err: unknown) => {
          if (charges) shares?.failed(charges);
          for (const done of g.done) done(err);
        },
      );
      // Its callers are answered by the handlers above, which run before this one's.
      const forget = () => this.#writing.delete(stored);
      this.#writing.add(stored);
      stored.then(forget, forget);
    }
  }
}

/** `device` or `device/module`: whose share a message is charged to. */
function senderOf(t: Telemetry): string {
  return t.moduleId === undefined ? t.deviceId : `${t.deviceId}/${t.moduleId}`;
}

function sameLayout(a: Part[], b: Layout): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as Part;
    const y = b[i] as Layout[number];
    if (x.ttl !== y.ttl || x.input !== y.input || !sameQueues(x.queues, y.queues)) return false;
  }
  return true;
}

function sameQueues(a: string[], b: string[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
