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
import { fromJson, type JsonObject, mergePatch, parseJson, parseJsonObject } from "../json.js";
import type { Logger } from "../log.js";
import type { MessageStore } from "../store/index.js";
import type { Link } from "./link.js";
import { TwinChannel } from "./twin-sync.js";

const KV_NS = "settings";
const KV_KEY = "$edgeHub/desired";

/** The settings in force. */
export interface EffectiveSettings extends StoreLimits {
  routes: Record<string, RouteSpec>;
  /** `$version` of the desired document they come from; undefined when from config only. */
  version: number | undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * JSON merge patch, as desired-property patches are: null deletes. A copy without
 * prototypes, patched by own keys only: a `__proto__` key from the parent stays data.
 */
function merge(doc: Record<string, unknown>, patch: Record<string, unknown>): Record<string, unknown> {
  const out = fromJson(doc) as JsonObject;
  mergePatch(out, fromJson(patch) as JsonObject);
  return out;
}

/** `$edgeHub` settings: from config, overridden by the parent's desired properties. */
export class EdgeHubSettings extends EventEmitter<{ changed: [settings: EffectiveSettings] }> {
  readonly #store: MessageStore;
  readonly #config: HubConfig;
  readonly #log: Logger;
  #desired: Record<string, unknown> = {};
  #current: EffectiveSettings;

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
      maxSizeBytesPerIdentity: config.maxSizeBytesPerIdentity,
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
      await this.#apply(parseJson(cached) as Record<string, unknown>, false);
    } catch (err) {
      this.#log.log("error", "settings-cache-unreadable", { reason: (err as Error).message });
    }
  }

  /** Follows the `$edgeHub` twin over `link` (subscribed to {@link TWIN_TOPICS}). */
  follow(link: Link): void {
    const twin = new TwinChannel(link, (payload) => {
      const patch = parseJsonObject(payload);
      if (patch) void this.#apply(merge(this.#desired, patch), true);
      else this.#log.log("warn", "settings-not-json", { part: "desired patch" });
    });
    // The whole twin each time the link comes up; a failed GET is asked again the next time.
    link.on("up", () => {
      twin.request("GET", Buffer.alloc(0)).then(
        (answer) => {
          if (answer.status !== 200) return;
          const doc = parseJsonObject(answer.body);
          return this.#apply(doc && isObject(doc.desired) ? doc.desired : {}, true);
        },
        () => undefined,
      );
    });
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
          maxSizeBytesPerIdentity: this.#config.maxSizeBytesPerIdentity,
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
      maxSizeBytesPerIdentity: next.maxSizeBytesPerIdentity,
      routes: Object.keys(next.routes).length,
    });
    this.emit("changed", next);
  }
}
