/**
 * The hub's own settings from its parent: the desired properties of its `$edgeHub`
 * module twin (routes, store-and-forward TTL and quota), as IoT Edge deploys them.
 * Applied live as they change and cached in the store, so an offline start uses the last
 * ones received. The hub's config gives the values under them. A desired document that
 * does not validate is refused whole (logged, naming the key): the last good one stays.
 */
import { EventEmitter } from "node:events";
import {
  type HubConfig,
  type RouteSpec,
  routesConfig,
  type StoreLimits,
  storeAndForwardConfig,
} from "../config/config.js";
import type { Logger } from "../log.js";
import type { MessageStore } from "../store/index.js";
import type { Link } from "./link.js";

const KV_NS = "settings";
const KV_KEY = "$edgeHub/desired";

/** The topics the settings link subscribes to. */
export const SETTINGS_TOPICS = ["$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"];

/** The settings in force. */
export interface EffectiveSettings extends StoreLimits {
  routes: Record<string, RouteSpec>;
  /** `$version` of the desired document they come from; undefined when from config only. */
  version: number | undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON merge patch, as desired-property patches are: null deletes. */
function merge(doc: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = { ...doc };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else if (isObject(v) && isObject(out[k])) out[k] = merge(out[k] as Record<string, unknown>, v);
    else out[k] = v;
  }
  return out;
}

/** `$edgeHub` settings: from config, overridden by the parent's desired properties. */
export class EdgeHubSettings extends EventEmitter<{ changed: [settings: EffectiveSettings] }> {
  readonly #store: MessageStore;
  readonly #config: HubConfig;
  readonly #log: Logger;
  #desired: Record<string, unknown> = {};
  #current: EffectiveSettings;
  #rid = 0;

  constructor(store: MessageStore, config: HubConfig, log: Logger) {
    super();
    this.#store = store;
    this.#config = config;
    this.#log = log;
    this.#current = {
      routes: config.routes,
      timeToLiveSecs: config.timeToLiveSecs,
      maxSizeBytes: config.maxSizeBytes,
      whenFull: config.whenFull,
      version: undefined,
    };
  }

  /** The settings in force. */
  get current(): EffectiveSettings {
    return this.#current;
  }

  /** Applies the settings cached from the last run, if any (an offline start). */
  async loadCached(): Promise<void> {
    const cached = await this.#store.kv.get(KV_NS, KV_KEY);
    if (!cached) return;
    try {
      await this.#apply(JSON.parse(cached.toString("utf8")) as Record<string, unknown>, false);
    } catch (err) {
      this.#log.log("error", "settings-cache-unreadable", { reason: (err as Error).message });
    }
  }

  /** Follows the `$edgeHub` twin over `link` (subscribed to {@link SETTINGS_TOPICS}). */
  follow(link: Link): void {
    link.on("up", () => {
      const rid = `settings-${++this.#rid}`;
      // A failed GET is asked again when the link next comes up.
      link.publish(`$iothub/twin/GET/?$rid=${rid}`, Buffer.alloc(0), () => undefined);
    });
    link.on("message", (topic, payload) => {
      void this.#onMessage(topic, payload);
    });
  }

  async #onMessage(topic: string, payload: Buffer): Promise<void> {
    let body: unknown;
    try {
      body = payload.length === 0 ? {} : JSON.parse(payload.toString("utf8"));
    } catch {
      this.#log.log("warn", "settings-not-json", { topic });
      return;
    }
    if (topic.startsWith("$iothub/twin/res/200/") && topic.includes("$rid=settings-")) {
      const desired = isObject(body) && isObject(body.desired) ? body.desired : {};
      await this.#apply(desired, true);
    } else if (topic.startsWith("$iothub/twin/PATCH/properties/desired/") && isObject(body)) {
      await this.#apply(merge(this.#desired, body), true);
    }
  }

  async #apply(desired: Record<string, unknown>, cache: boolean): Promise<void> {
    let next: EffectiveSettings;
    try {
      const limits = storeAndForwardConfig(
        "$edgeHub.storeAndForwardConfiguration",
        desired.storeAndForwardConfiguration ?? {},
        {
          timeToLiveSecs: this.#config.timeToLiveSecs,
          maxSizeBytes: this.#config.maxSizeBytes,
          whenFull: this.#config.whenFull,
        },
      );
      const routes =
        desired.routes === undefined ? this.#config.routes : routesConfig("$edgeHub.routes", desired.routes);
      const version = typeof desired.$version === "number" ? desired.$version : undefined;
      next = { ...limits, routes, version };
    } catch (err) {
      this.#log.log("error", "settings-refused", { reason: (err as Error).message });
      return;
    }
    this.#desired = desired;
    const before = this.#current;
    this.#current = next;
    if (
      before.timeToLiveSecs !== next.timeToLiveSecs ||
      before.maxSizeBytes !== next.maxSizeBytes ||
      before.whenFull !== next.whenFull
    ) {
      await this.#store.configure({
        defaultTtlSecs: next.timeToLiveSecs,
        maxSizeBytes: next.maxSizeBytes,
        whenFull: next.whenFull,
      });
    }
    if (cache) await this.#store.kv.put(KV_NS, KV_KEY, JSON.stringify(desired));
    this.#log.log("info", "settings-applied", {
      version: next.version,
      timeToLiveSecs: next.timeToLiveSecs,
      maxSizeBytes: next.maxSizeBytes,
      routes: Object.keys(next.routes).length,
    });
    this.emit("changed", next);
  }
}
