/**
 * The router as a hub runs it: its table from the routes in force (config, then the
 * parent's `$edgeHub` settings, live), the ids it recalls after a restart, and each
 * identity's share of the quota, followed as the settings change.
 */
import type { RouteSpec } from "../config/config.js";
import type { Logger } from "../log.js";
import type { MessageStore } from "../store/index.js";
import { EVENTS_QUEUE, UPSTREAM_QUEUE } from "../vocabulary.js";
import { followShare, type IdentityShares } from "./identity-shares.js";
import { RouteTable } from "./route-table.js";
import { Router } from "./router.js";

/** The settings routing follows (the hub's `$edgeHub` settings). */
export interface RoutingSettings {
  readonly current: { routes: Record<string, RouteSpec>; maxSizeBytesPerIdentity: number };
  on(event: "changed", listener: (s: RoutingSettings["current"]) => void): unknown;
}

/** Where the hub stands: a root keeps device-to-cloud messages as events, an edge forwards them. */
export interface RoutingRole {
  /** The hub's own device id on its parent; undefined on a root. */
  edgeDeviceId: string | undefined;
  /** How long a root keeps its events. */
  eventsRetentionSecs: number;
}

/** The hub's router, with the shares of the quota it charges. */
export class HubRouting {
  readonly router: Router;
  /** Queues the router fills for the parent or a module input: recalled, and charged to shares. */
  readonly routed: (queue: string) => boolean;
  readonly #store: MessageStore;
  readonly #log: Logger;
  #shares: IdentityShares | undefined;
  /** The last change of the share being applied (they apply in order). */
  #sharing: Promise<void> = Promise.resolve();

  private constructor(store: MessageStore, router: Router, routed: (q: string) => boolean, log: Logger) {
    this.#store = store;
    this.router = router;
    this.routed = routed;
    this.#log = log;
  }

  /** The router over `store`, with the routes and share of `settings`, following their changes. */
  static async open(
    store: MessageStore,
    settings: RoutingSettings,
    role: RoutingRole,
    log: Logger,
  ): Promise<HubRouting> {
    const edge = role.edgeDeviceId;
    // A root keeps device-to-cloud messages as IoT Hub's built-in events; an edge hub
    // stores them for its parent under the store-and-forward TTL.
    const upstreamQueue = edge === undefined ? EVENTS_QUEUE : UPSTREAM_QUEUE;
    // BrokeredEndpoint("/modules/m/…") names a module of the edge device itself; a root has
    // no device of its own, so there it is a module of the sender's device.
    const table = (routes: Record<string, RouteSpec>) =>
      new RouteTable(routes, upstreamQueue, (m) => edge ?? m.deviceId, edge !== undefined);
    const router = new Router(
      store,
      table(settings.current.routes),
      edge === undefined ? role.eventsRetentionSecs : undefined,
    );
    settings.on("changed", (s) => router.setRoutes(table(s.routes)));
    // Child hubs resend what they had in flight when this hub went away: what is stored
    // already (upstream, or routed to a module input) is recognised after a restart too.
    const routed = (q: string) =>
      q === upstreamQueue || q.startsWith(`${upstreamQueue}/p`) || q.startsWith("$inputs/");
    await router.recall(routed);
    const routing = new HubRouting(store, router, routed, log);
    // Each identity's share of the quota, counted in the queues the router fills.
    routing.#shares = await followShare(undefined, settings.current.maxSizeBytesPerIdentity, store, routed);
    router.setShares(routing.#shares);
    settings.on("changed", (s) => routing.#follow(s.maxSizeBytesPerIdentity));
    return routing;
  }

  /** Per-identity shares of the quota; undefined: off. */
  get shares(): IdentityShares | undefined {
    return this.#shares;
  }

  #follow(limit: number): void {
    this.#sharing = this.#sharing
      .then(async () => {
        this.#shares = await followShare(this.#shares, limit, this.#store, this.routed);
        this.router.setShares(this.#shares);
      })
      .catch((err: unknown) => this.#log.log("error", "shares-failed", { reason: (err as Error).message }));
  }

  /** Waits for the share being applied, and saves and closes the shares' table. */
  async close(): Promise<void> {
    await this.#sharing;
    await this.#shares?.close();
  }
}
