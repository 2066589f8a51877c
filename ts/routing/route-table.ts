/**
 * Which endpoints a device or module message goes to, by the hub's routes (IoT Edge's
 * `FROM … WHERE … INTO …`). With no routes configured the hub behaves as
 * `FROM /messages/* INTO $upstream`; with routes, a message no route matches goes nowhere
 * (as IoT Edge) and is counted.
 */
import type { RouteSpec } from "../config/config.js";
import { record } from "../json.js";
import { deliveryQueue, PRIORITIES, priorityQueue } from "../vocabulary.js";
import { type ConditionInput, matches } from "./condition.js";
import type { RouteSource } from "./route-grammar.js";

/** Where a message goes: a store queue, with the route's TTL and what delivery needs. */
export interface Destination {
  queue: string;
  ttlSecs: number | undefined;
  /** For a module input: the input's name (stored with the message as `$.in`). */
  input?: string;
  /** The client the queue is delivered to (module inputs and devices); absent for upstream. */
  clientId?: string;
}

/** The message as routes see it. */
export interface RoutedMessage {
  deviceId: string;
  moduleId?: string;
  /** Application and `$.` system properties (with `$.cdid`, `$.cmid`, `$.on`). */
  properties: Record<string, string>;
  body: Buffer;
  /** A twin change notification (a reported patch), not a device-to-cloud message. */
  twinChange?: boolean;
}

/** `$.` keys of the stored bag and their names in conditions. */
const SYSTEM_NAMES: Record<string, string> = {
  "$.cdid": "connectionDeviceId",
  "$.cmid": "connectionModuleId",
  "$.ct": "contentType",
  "$.ce": "contentEncoding",
  "$.mid": "messageId",
  "$.cid": "correlationId",
  "$.on": "outputName",
  "$.to": "to",
  "$.uid": "userId",
};

/** The condition's view of a message: application properties and system properties apart. */
export function conditionInput(m: RoutedMessage): ConditionInput {
  const properties = record<string>();
  const system = record<string | undefined>();
  for (const k of Object.keys(m.properties)) {
    const v = m.properties[k] as string;
    if (!k.startsWith("$.")) properties[k] = v;
    else {
      const name = Object.hasOwn(SYSTEM_NAMES, k) ? SYSTEM_NAMES[k] : undefined;
      if (name) system[name] = v;
    }
  }
  return { properties, system, body: m.body };
}

function sourceMatches(s: RouteSource, m: RoutedMessage): boolean {
  if (s.kind === "all") return true;
  if (s.kind === "twinChangeNotifications") return m.twinChange === true;
  if (m.twinChange) return false;
  if (s.scope === "all") return true;
  if (m.moduleId === undefined) return false;
  if (s.moduleId === undefined) return true;
  if (s.moduleId !== m.moduleId) return false;
  const output = m.properties["$.on"];
  if (s.output === undefined) return true;
  if (output === undefined) return false;
  return s.output === "*" || s.output === output;
}

/** The hub's routes, ready to evaluate. */
export class RouteTable {
  readonly #routes: RouteSpec[];
  readonly #upstreamQueue: string;
  /**
   * An edge hub's table: upstream routes with a priority go to the queue of that priority,
   * and twin changes routed upstream are not stored (reported properties reach the parent
   * through the twin sync, whatever the routes).
   */
  readonly #edge: boolean;
  readonly #modulesOf: (m: RoutedMessage) => string;
  /** Messages no route took, since start. */
  unrouted = 0;
  /** The answer without routes, shared (read-only): no allocation per message on the ingest path. */
  readonly #everythingUpstream: readonly Destination[];

  /**
   * @param upstreamQueue where `$upstream` goes (`$upstream` on an edge hub, the built-in
   *   events queue on a root).
   * @param modulesOf the device whose modules `BrokeredEndpoint` names: the edge device on
   *   an edge hub, the sender's device on a root.
   * @param edge true on an edge hub (one with a parent).
   */
  constructor(
    routes: Record<string, RouteSpec>,
    upstreamQueue: string,
    modulesOf: (m: RoutedMessage) => string,
    edge = false,
  ) {
    this.#routes = Object.values(routes);
    this.#upstreamQueue = upstreamQueue;
    this.#edge = edge;
    this.#modulesOf = modulesOf;
    this.#everythingUpstream = Object.freeze([Object.freeze({ queue: upstreamQueue, ttlSecs: undefined })]);
  }

  /** True when no routes are configured (everything goes upstream). */
  get isDefault(): boolean {
    return this.#routes.length === 0;
  }

  /** True when some route may take twin change notifications (`/twinChangeNotifications` or `/*`). */
  get takesTwinChanges(): boolean {
    return this.#routes.some((r) => r.parsed.source.kind !== "messages");
  }

  #upstreamQueueOf(priority: number | undefined): string {
    return this.#edge && priority !== undefined
      ? priorityQueue(this.#upstreamQueue, priority)
      : this.#upstreamQueue;
  }

  /** The destinations of `m`, each once; empty when no route takes it. Read-only. */
  destinations(m: RoutedMessage): readonly Destination[] {
    if (this.#routes.length === 0) return m.twinChange ? [] : this.#everythingUpstream;
    const out = new Map<string, { d: Destination; rank: number }>();
    let input: ConditionInput | undefined;
    for (const r of this.#routes) {
      const { source, condition, sink } = r.parsed;
      if (!sourceMatches(source, m)) continue;
      if (condition) {
        input ??= conditionInput(m);
        if (!matches(condition, input)) continue;
      }
      const ttlSecs = r.timeToLiveSecs;
      let d: Destination;
      if (sink.kind === "upstream") {
        if (m.twinChange && this.#edge) continue;
        d = { queue: this.#upstreamQueueOf(r.priority), ttlSecs };
      } else {
        const clientId = sink.kind === "device" ? sink.deviceId : `${this.#modulesOf(m)}/${sink.moduleId}`;
        const base = deliveryQueue(clientId);
        const queue = r.priority === undefined ? base : priorityQueue(base, r.priority);
        d =
          sink.kind === "device"
            ? { queue, ttlSecs, clientId }
            : { queue, ttlSecs, input: sink.input, clientId };
      }
      // One copy per endpoint (upstream, a client and input): two routes into the same one
      // store it once, in the queue of the most urgent of them.
      const key = `${d.clientId ?? ""}\u0000${d.input ?? ""}`;
      const rank = r.priority ?? PRIORITIES;
      const seen = out.get(key);
      if (!seen || rank < seen.rank) out.set(key, { d, rank });
    }
    if (out.size === 0 && !m.twinChange) this.unrouted++;
    return Array.from(out.values(), (e) => e.d);
  }
}
