/**
 * Hub configuration: every key is declared once in ./schema.ts (type, default, check,
 * usage); this module loads a config with it, and applies the rules that span keys: the
 * manifest's `$edgeHub` layered under the top-level keys, routes parsed, a parent's
 * credentials and kind.
 */
import { hostname as osHostname } from "node:os";
import { resolve } from "node:path";
import type * as v from "valibot";
import { record } from "../json.js";
import { parseRoute, type Route } from "../routing/route-grammar.js";
import { bad, check, usageOf, usageText } from "./declare.js";
import type { Limits } from "./limits.js";
import {
  DEFAULT_METRICS_PORT,
  type EdgeHubDesired,
  hubConfigSchema,
  type parentSchema,
  routeSchema,
  storeAndForwardSchema,
} from "./schema.js";

export { DEFAULT_METRICS_PORT, type EdgeHubDesired };

/**
 * What `EdgeHub.start` takes; every field has a default. Each key, what it takes, its
 * default and what it does: `edgehub start --help` ({@link configUsage}), from ./schema.ts.
 */
export type HubConfigInput = v.InferInput<typeof hubConfigSchema>;

/** How to reach the parent and forward to it (the `parent` key). */
export type ParentConfigInput = v.InferInput<typeof parentSchema>;

/** A route as IoT Edge writes it. */
export type RouteInput = v.InferInput<typeof routeSchema>;

/**
 * A route with its defaults. Priority 0 is the highest and 9 the lowest; a route without
 * one comes after all of them, as in IoT Edge. The store's TTL when it gives none.
 */
export interface RouteSpec {
  route: string;
  /** The route parsed (the text is checked when the config or the settings are loaded). */
  parsed: Route;
  priority: number | undefined;
  timeToLiveSecs: number | undefined;
}

/** The kinds of parent (see the `parent.type` key). */
export type ParentType = "edgehub" | "iothub" | "mqtt";

/** Azure IoT Hub's own host names (public cloud, China, US Government, Germany). */
const AZURE_IOT_HUB = /\.azure-devices\.(net|cn|us|de)$/i;

/** A validated parent configuration: the keys with their defaults, the kind and the hub's name settled. */
export type ParentConfig = Omit<v.InferOutput<typeof parentSchema>, "type" | "hubHostname"> & {
  type: ParentType;
  hubHostname: string;
};

/** Store-and-forward limits. */
export interface StoreLimits {
  timeToLiveSecs: number;
  maxSizeBytes: number;
  whenFull: "reject" | "drop-oldest";
  /** 0: off. */
  maxSizeBytesPerIdentity: number;
}

type Parsed = v.InferOutput<typeof hubConfigSchema>;

/** A validated configuration with defaults applied. */
export type HubConfig = Omit<
  Parsed,
  | "hostname"
  | "storeAndForwardConfiguration"
  | "parent"
  | "routes"
  | "$edgeHub"
  | "modulesContent"
  | "metrics"
  | "eventHub"
> &
  StoreLimits & {
    hostname: string;
    parent: ParentConfig | undefined;
    routes: Record<string, RouteSpec>;
    limits: Limits;
    /** The operators' listener; false: off. `required`: the port was configured (binding it must succeed). */
    metrics: { host: string; port: number; required: boolean } | false;
    /** The Event Hubs–compatible endpoint; `name` defaults to the hostname's first label. */
    eventHub: Omit<Parsed["eventHub"], "name"> & { name: string };
  };

/** The usage text of every config key, for `edgehub start --help`. */
export function configUsage(): string {
  return usageText(usageOf(hubConfigSchema));
}

/** The event hub's name by default: the hostname's first label, as IoT Hub names its built-in endpoint. */
function defaultEventHubName(hostname: string): string {
  const label = hostname.split(".")[0] ?? "";
  const usable = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/.test(label) && !/^(?:devices|messages)$/i.test(label);
  return usable ? label : "events";
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validates `raw` (parsed JSON or an object) and applies defaults. */
export function loadConfig(raw: unknown = {}): HubConfig {
  const c = check(hubConfigSchema, raw);
  const input = raw as HubConfigInput;
  const manifest = manifestDesired(input);
  // Top-level keys win over the manifest's, field by field.
  const own = input.storeAndForwardConfiguration ?? {};
  const fromManifest = manifest.storeAndForwardConfiguration ?? {};
  const layered = {
    ...fromManifest,
    ...own,
    storeLimits: { ...fromManifest.storeLimits, ...own.storeLimits },
  };
  const limits = c.limits;
  // Node refuses a header deadline past the request deadline.
  if (limits.httpHeadersTimeoutMs > limits.httpRequestTimeoutMs)
    throw bad("limits.httpHeadersTimeoutMs", "must not exceed limits.httpRequestTimeoutMs");
  const metrics = c.metrics;
  const hostname = c.hostname ?? osHostname();
  return {
    hostname,
    dataDir: resolve(c.dataDir),
    listen: c.listen,
    eventsRetentionSecs: c.eventsRetentionSecs,
    eventHub: { ...c.eventHub, name: c.eventHub.name ?? defaultEventHubName(hostname) },
    trustedDeviceCaFiles: c.trustedDeviceCaFiles,
    allowNesting: c.allowNesting,
    tls: c.tls,
    ...storeAndForwardConfig("storeAndForwardConfiguration", layered),
    parent: c.parent === undefined ? undefined : parentConfig(c.parent),
    routes: routesConfig("routes", input.routes ?? manifest.routes ?? {}),
    logLevel: c.logLevel,
    durability: c.durability,
    limits,
    metrics:
      metrics === false
        ? false
        : { ...metrics, required: isObject(input.metrics) && input.metrics.port !== undefined },
  };
}

/**
 * Validates a `storeAndForwardConfiguration` object (named `key` in errors); what it leaves
 * out comes from `under` (the limits in force), else from the keys' defaults.
 */
export function storeAndForwardConfig(key: string, sf: unknown, under?: StoreLimits): StoreLimits {
  if (!isObject(sf)) throw bad(key, "must be an object");
  let layered: unknown = sf;
  if (under) {
    const { timeToLiveSecs, ...storeLimits } = under;
    // Not an object: left as given, for the check to refuse.
    const given = sf.storeLimits ?? {};
    layered = { timeToLiveSecs, ...sf, storeLimits: isObject(given) ? { ...storeLimits, ...given } : given };
  }
  const { timeToLiveSecs, storeLimits } = check(storeAndForwardSchema, layered, key);
  return { timeToLiveSecs, ...storeLimits };
}

/** The `properties.desired` of a manifest's `$edgeHub` section given as config, or {}. */
function manifestDesired(raw: HubConfigInput): EdgeHubDesired {
  const section = raw.$edgeHub ?? raw.modulesContent?.$edgeHub;
  return section?.["properties.desired"] ?? {};
}

/** Validates routes (a name → route string or `{route, priority, timeToLiveSecs}`). */
export function routesConfig(key: string, raw: unknown): Record<string, RouteSpec> {
  if (!isObject(raw)) throw bad(key, "must be an object of named routes");
  // Route names are input: `__proto__` is a name like any other.
  const out = record<RouteSpec>();
  for (const [name, r] of Object.entries(raw)) {
    const route = check(routeSchema, r, `${key}.${name}`);
    const spec = typeof route === "string" ? { route } : route;
    let parsed: Route;
    try {
      parsed = parseRoute(spec.route);
    } catch (err) {
      throw bad(`${key}.${name}`, (err as Error).message);
    }
    out[name] = {
      route: spec.route,
      parsed,
      priority: "priority" in spec ? spec.priority : undefined,
      timeToLiveSecs: "timeToLiveSecs" in spec ? spec.timeToLiveSecs : undefined,
    };
  }
  return out;
}

/** The parent's keys checked together: its credentials, its kind, the hub its tokens name. */
function parentConfig(p: v.InferOutput<typeof parentSchema>): ParentConfig {
  if ((p.certFile === undefined) !== (p.keyFile === undefined))
    throw bad("parent.certFile", "and parent.keyFile go together");
  // Unset, the kind follows the hub's name: an Azure IoT Hub name is never one of ours, so
  // nothing of ours is sent there; any other name is a root of ours (every config before
  // the kinds were told apart).
  const hubHostname = p.hubHostname ?? p.hostname;
  const type = p.type ?? (AZURE_IOT_HUB.test(hubHostname) ? "iothub" : "edgehub");
  if (type !== "mqtt" && p.sharedAccessKey === undefined && p.certFile === undefined)
    throw bad("parent.sharedAccessKey", "or parent.certFile + parent.keyFile is required");
  return { ...p, type, hubHostname };
}
