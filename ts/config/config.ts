/**
 * Hub configuration: IoT Edge's key names where one exists, defaults for an embedded
 * root hub, and validation that names the offending key.
 */
import { hostname as osHostname } from "node:os";
import { resolve } from "node:path";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { record } from "../json.js";
import type { LogLevel } from "../log.js";
import { parseRoute, type Route } from "../routing/route-grammar.js";
import { type Limits, type LimitsInput, limitsConfig } from "./limits.js";

/** What `EdgeHub.start` takes; every field has a default. */
export interface HubConfigInput {
  /** The hub's hostname: in tokens' audience, usernames and the server certificate. */
  hostname?: string;
  /** Where the store, keys and certificates live. Default `./edgehub-data`. */
  dataDir?: string;
  listen?: {
    /** Interface to bind. Default all (`0.0.0.0`). */
    host?: string;
    /** MQTT over TLS. Default 8883; 0 picks a free port. */
    mqtts?: number;
    /** HTTPS: the service API. Default 8443 (443 where configured, as IoT Hub); 0 picks a free port. */
    https?: number;
    /** AMQP over TLS (IoT Hub's 5671). Off unless set (docs/amqp.md: what it serves so far); 0 picks a free port. */
    amqps?: number;
  };
  /** Edge devices may be children of other edge devices (nested gateways), as on IoT Hub. Default true; false forbids it. */
  allowNesting?: boolean;
  /** PEM files of CAs whose certificates authenticate `certificateAuthority` devices (CN = device id). */
  trustedDeviceCaFiles?: string[];
  /** How long a root hub keeps device-to-cloud messages in its events queue. Default 86400. */
  eventsRetentionSecs?: number;
  /** Own TLS material; without it a development CA is generated under `<dataDir>/certs`. */
  tls?: { certFile: string; keyFile: string; caFile: string };
  storeAndForwardConfiguration?: {
    /** Default 7200; -1 keeps messages forever. */
    timeToLiveSecs?: number;
    /**
     * `whenFull`: `"reject"` (default; the device's message is refused, nothing stored is lost) or `"drop-oldest"`.
     * `maxSizeBytesPerIdentity`: live bytes one device or module may have stored; past it its
     * messages are refused (`STORE_SHARE_EXCEEDED`) while others are accepted. 0 or absent: off.
     */
    storeLimits?: {
      maxSizeBytes?: number;
      whenFull?: "reject" | "drop-oldest";
      maxSizeBytesPerIdentity?: number;
    };
  };
  /** The hub's parent: without one the hub is a root (it plays the cloud). */
  parent?: ParentConfigInput;
  /** Routes by name (IoT Edge's `$edgeHub` routes): a route string or `{route, priority, timeToLiveSecs}`. */
  routes?: Record<string, RouteInput>;
  /**
   * An IoT Edge deployment manifest's `$edgeHub` section (`{"properties.desired": {routes,
   * storeAndForwardConfiguration}}`); also read from a whole manifest's `modulesContent`.
   * Keys given at the top level win.
   */
  $edgeHub?: { "properties.desired"?: EdgeHubDesired };
  modulesContent?: { $edgeHub?: { "properties.desired"?: EdgeHubDesired } };
  logLevel?: LogLevel;
  /** Connections and per-socket deadlines, sized for a small board by default (./limits.ts). */
  limits?: LimitsInput;
  /**
   * The operators' listener: `/metrics`, `/healthz`, `/readyz` and the status page, without
   * credentials. Default `{host: "127.0.0.1", port: 9600}`; `port: 0` picks a free port;
   * `false` turns it off. When the default port is taken the hub starts without it (and
   * logs why); a port given here that cannot be bound fails the start.
   */
  metrics?: { host?: string; port?: number } | false;
}

/** A route as IoT Edge writes it. */
export type RouteInput = string | { route: string; priority?: number; timeToLiveSecs?: number };

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

/** The `$edgeHub` desired properties this hub reads. */
export interface EdgeHubDesired {
  schemaVersion?: string;
  routes?: Record<string, RouteInput>;
  storeAndForwardConfiguration?: {
    timeToLiveSecs?: number;
    storeLimits?: { maxSizeBytes?: number; maxSizeBytesPerIdentity?: number };
  };
}

/** How to reach the parent and forward to it. */
export interface ParentConfigInput {
  /**
   * What the parent is; it decides what goes up besides the device's own message.
   * `"edgehub"`: a root hub or edge hub of this project; every message carries its forwarder
   * id (`$.fid`), the parent's filter for resends after a link loss. `"iothub"`: Azure IoT
   * Hub or Microsoft's IoT Edge; nothing is added that the device did not set (a resend
   * may be stored twice there: at least once, as IoT Edge). `"mqtt"`: any MQTT broker.
   * Default: `"iothub"` when `hubHostname` is an Azure IoT Hub name
   * (`*.azure-devices.net`, `.cn`, `.us`, `.de`), `"edgehub"` otherwise.
   */
  type?: ParentType;
  hostname: string;
  /**
   * The IoT hub every token of the hierarchy names (Azure IoT Hub, or the root hub); the
   * parent's hostname by default. Nested edges set it to the root's name, which their
   * children's tokens carry.
   */
  hubHostname?: string;
  /** MQTT over TLS. Default 8883. */
  port?: number;
  /** HTTPS, for the device scope sync. Default 443. */
  httpsPort?: number;
  /** This hub's device id on its parent (an edge device there). For `mqtt`, the client id. */
  deviceId: string;
  sharedAccessKey?: string;
  /** X.509 login instead of a key. */
  certFile?: string;
  keyFile?: string;
  /** CA of the parent's server certificate; the system's CAs if absent. */
  caFile?: string;
  /** `mqtt` only: login and topic template (`{deviceId}`, `{moduleId}`, `{outputName}`). */
  username?: string;
  password?: string;
  topic?: string;
  /** Unacknowledged messages per link. Default 100, at most 16384 (half of the link's 32,767 packet ids). */
  window?: number;
  /** `"stored"` (default): in stored order. `"live-first"`: new messages first, the backlog behind. */
  order?: "stored" | "live-first";
  /** Cap on messages per second sent upstream (slow uplinks); unlimited if absent. */
  maxMessagesPerSec?: number;
  /** How often the device scope is fetched again. Default 3600. */
  scopeRefreshSecs?: number;
  /** Longest wait between reconnect attempts of the hub's own link, in ms (jittered). Default 1000. */
  maxBackoffMs?: number;
  /** MQTT keepalive of the links, in seconds: a link gone silent is noticed in about 1.5× this. Default 30. */
  keepaliveSecs?: number;
  /** A link whose oldest publish waits longer than this for its PUBACK is dropped and reopened. Default 15000. */
  ackTimeoutMs?: number;
}

/** The kinds of parent (see {@link ParentConfigInput.type}). */
export type ParentType = "edgehub" | "iothub" | "mqtt";

/** Azure IoT Hub's own host names (public cloud, China, US Government, Germany). */
const AZURE_IOT_HUB = /\.azure-devices\.(net|cn|us|de)$/i;

/** A validated parent configuration. */
export interface ParentConfig {
  type: ParentType;
  hostname: string;
  hubHostname: string;
  port: number;
  httpsPort: number;
  deviceId: string;
  sharedAccessKey: string | undefined;
  certFile: string | undefined;
  keyFile: string | undefined;
  caFile: string | undefined;
  username: string | undefined;
  password: string | undefined;
  topic: string;
  window: number;
  order: "stored" | "live-first";
  maxMessagesPerSec: number | undefined;
  scopeRefreshSecs: number;
  maxBackoffMs: number;
  keepaliveSecs: number;
  ackTimeoutMs: number;
}

/** A validated configuration with defaults applied. */
export interface HubConfig {
  hostname: string;
  dataDir: string;
  /** `amqps`: undefined when the AMQP listener is off. */
  listen: { host: string; mqtts: number; https: number; amqps?: number };
  eventsRetentionSecs: number;
  trustedDeviceCaFiles: string[];
  allowNesting: boolean;
  tls: { certFile: string; keyFile: string; caFile: string } | undefined;
  timeToLiveSecs: number;
  maxSizeBytes: number;
  whenFull: "reject" | "drop-oldest";
  /** Live bytes one identity may have stored; 0: no per-identity share. */
  maxSizeBytesPerIdentity: number;
  parent: ParentConfig | undefined;
  routes: Record<string, RouteSpec>;
  logLevel: LogLevel;
  limits: Limits;
  /** The operators' listener; false: off. `required`: the port was configured (binding it must succeed). */
  metrics: { host: string; port: number; required: boolean } | false;
}

function bad(key: string, why: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.CONFIG_INVALID, `config key ${key}: ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function port(key: string, v: unknown, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 65535)
    throw bad(key, "must be a port number 0-65535");
  return v;
}

function known(key: string, obj: Record<string, unknown>, keys: string[]): void {
  for (const k of Object.keys(obj)) if (!keys.includes(k)) throw bad(`${key}${k}`, "is not a known key");
}

/** Validates `raw` (parsed JSON or an object) and applies defaults. */
export function loadConfig(raw: unknown = {}): HubConfig {
  if (!isObject(raw)) throw bad("(root)", "must be an object");
  known("", raw, [
    "hostname",
    "dataDir",
    "listen",
    "tls",
    "storeAndForwardConfiguration",
    "eventsRetentionSecs",
    "trustedDeviceCaFiles",
    "allowNesting",
    "parent",
    "routes",
    "$edgeHub",
    "modulesContent",
    "logLevel",
    "limits",
    "metrics",
  ]);
  const manifest = manifestDesired(raw);
  const hostname = raw.hostname ?? osHostname();
  if (typeof hostname !== "string" || !/^[A-Za-z0-9.-]{1,253}$/.test(hostname))
    throw bad("hostname", "must be a DNS name");
  const dataDir = raw.dataDir ?? "./edgehub-data";
  if (typeof dataDir !== "string" || dataDir === "") throw bad("dataDir", "must be a path");
  const listen = raw.listen ?? {};
  if (!isObject(listen)) throw bad("listen", "must be an object");
  known("listen.", listen, ["host", "mqtts", "https", "amqps"]);
  const host = listen.host ?? "0.0.0.0";
  if (typeof host !== "string") throw bad("listen.host", "must be an address");
  let tls: HubConfig["tls"];
  if (raw.tls !== undefined) {
    if (!isObject(raw.tls)) throw bad("tls", "must be an object");
    for (const k of ["certFile", "keyFile", "caFile"]) {
      if (typeof raw.tls[k] !== "string") throw bad(`tls.${k}`, "must be a path");
    }
    tls = raw.tls as HubConfig["tls"];
  }
  const own = raw.storeAndForwardConfiguration ?? {};
  if (!isObject(own)) throw bad("storeAndForwardConfiguration", "must be an object");
  const fromManifest = manifest.storeAndForwardConfiguration ?? {};
  if (!isObject(fromManifest)) throw bad("$edgeHub.storeAndForwardConfiguration", "must be an object");
  // Top-level keys win over the manifest's, field by field.
  const sf: Record<string, unknown> = { ...fromManifest, ...own };
  if (isObject(fromManifest.storeLimits) && isObject(own.storeLimits))
    sf.storeLimits = { ...fromManifest.storeLimits, ...own.storeLimits };
  const {
    timeToLiveSecs: ttl,
    maxSizeBytes: max,
    whenFull,
    maxSizeBytesPerIdentity,
  } = storeAndForwardConfig("storeAndForwardConfiguration", sf, {
    timeToLiveSecs: 7200,
    maxSizeBytes: 10 * 2 ** 30,
    whenFull: "reject",
    maxSizeBytesPerIdentity: 0,
  });
  const retention = raw.eventsRetentionSecs ?? 86_400;
  if (typeof retention !== "number" || !Number.isInteger(retention) || retention < 1) {
    throw bad("eventsRetentionSecs", "must be a positive integer");
  }
  const cas = raw.trustedDeviceCaFiles ?? [];
  if (!Array.isArray(cas) || cas.some((f) => typeof f !== "string"))
    throw bad("trustedDeviceCaFiles", "must be a list of paths");
  const allowNesting = raw.allowNesting ?? true;
  if (typeof allowNesting !== "boolean") throw bad("allowNesting", "must be true or false");
  const logLevel = raw.logLevel ?? "info";
  if (!["debug", "info", "warn", "error"].includes(logLevel as string))
    throw bad("logLevel", "must be debug, info, warn or error");
  return {
    hostname,
    dataDir: resolve(dataDir),
    listen: {
      host,
      mqtts: port("listen.mqtts", listen.mqtts, 8883),
      https: port("listen.https", listen.https, 8443),
      ...(listen.amqps === undefined ? {} : { amqps: port("listen.amqps", listen.amqps, 5671) }),
    },
    eventsRetentionSecs: retention,
    trustedDeviceCaFiles: cas as string[],
    allowNesting,
    tls,
    timeToLiveSecs: ttl,
    maxSizeBytes: max,
    whenFull,
    maxSizeBytesPerIdentity,
    parent: raw.parent === undefined ? undefined : parentConfig(raw.parent),
    routes: routesConfig("routes", raw.routes ?? manifest.routes ?? {}),
    logLevel: logLevel as LogLevel,
    limits: limitsConfig("limits", raw.limits),
    metrics: metricsConfig(raw.metrics),
  };
}

/** The default port of the operators' listener. */
export const DEFAULT_METRICS_PORT = 9600;

/** Validates `metrics`: `false`, or `{host, port}` over 127.0.0.1:9600. */
function metricsConfig(raw: unknown): HubConfig["metrics"] {
  if (raw === false) return false;
  if (raw === undefined) return { host: "127.0.0.1", port: DEFAULT_METRICS_PORT, required: false };
  if (!isObject(raw)) throw bad("metrics", "must be {host, port} or false");
  known("metrics.", raw, ["host", "port"]);
  const host = raw.host ?? "127.0.0.1";
  if (typeof host !== "string" || host === "") throw bad("metrics.host", "must be an address");
  return {
    host,
    port: port("metrics.port", raw.port, DEFAULT_METRICS_PORT),
    required: raw.port !== undefined,
  };
}

/** Store-and-forward limits. */
export interface StoreLimits {
  timeToLiveSecs: number;
  maxSizeBytes: number;
  whenFull: "reject" | "drop-oldest";
  /** 0: off. */
  maxSizeBytesPerIdentity: number;
}

/** Validates a `storeAndForwardConfiguration` object (named `key` in errors) over `defaults`. */
export function storeAndForwardConfig(key: string, sf: unknown, defaults: StoreLimits): StoreLimits {
  if (!isObject(sf)) throw bad(key, "must be an object");
  const ttl = sf.timeToLiveSecs ?? defaults.timeToLiveSecs;
  if (ttl !== -1 && (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1)) {
    throw bad(`${key}.timeToLiveSecs`, "must be -1 or a positive integer");
  }
  const limits = sf.storeLimits ?? {};
  if (!isObject(limits)) throw bad(`${key}.storeLimits`, "must be an object");
  const max = limits.maxSizeBytes ?? defaults.maxSizeBytes;
  if (typeof max !== "number" || !Number.isSafeInteger(max) || max < 1) {
    throw bad(`${key}.storeLimits.maxSizeBytes`, "must be a positive integer");
  }
  const whenFull = limits.whenFull ?? defaults.whenFull;
  if (whenFull !== "reject" && whenFull !== "drop-oldest") {
    throw bad(`${key}.storeLimits.whenFull`, 'must be "reject" or "drop-oldest"');
  }
  const share = limits.maxSizeBytesPerIdentity ?? defaults.maxSizeBytesPerIdentity;
  if (typeof share !== "number" || !Number.isSafeInteger(share) || share < 0) {
    throw bad(`${key}.storeLimits.maxSizeBytesPerIdentity`, "must be 0 (off) or a positive integer");
  }
  return { timeToLiveSecs: ttl as number, maxSizeBytes: max, whenFull, maxSizeBytesPerIdentity: share };
}

/** The `properties.desired` of a manifest's `$edgeHub` section given as config, or {}. */
function manifestDesired(raw: Record<string, unknown>): Record<string, unknown> {
  const section = raw.$edgeHub ?? (isObject(raw.modulesContent) ? raw.modulesContent.$edgeHub : undefined);
  if (section === undefined) return {};
  if (!isObject(section)) throw bad("$edgeHub", "must be an object");
  const desired = section["properties.desired"] ?? {};
  if (!isObject(desired)) throw bad('$edgeHub."properties.desired"', "must be an object");
  return desired;
}

/** Validates routes (a name → route string or `{route, priority, timeToLiveSecs}`). */
export function routesConfig(key: string, raw: unknown): Record<string, RouteSpec> {
  if (!isObject(raw)) throw bad(key, "must be an object of named routes");
  // Route names are input: `__proto__` is a name like any other.
  const out = record<RouteSpec>();
  const parse = (name: string, text: string): Route => {
    try {
      return parseRoute(text);
    } catch (err) {
      throw bad(`${key}.${name}`, (err as Error).message);
    }
  };
  for (const [name, r] of Object.entries(raw)) {
    if (typeof r === "string") {
      out[name] = { route: r, parsed: parse(name, r), priority: undefined, timeToLiveSecs: undefined };
      continue;
    }
    if (!isObject(r) || typeof r.route !== "string")
      throw bad(`${key}.${name}`, "must be a route string or {route, priority, timeToLiveSecs}");
    known(`${key}.${name}.`, r, ["route", "priority", "timeToLiveSecs"]);
    const priority = r.priority;
    if (
      priority !== undefined &&
      (typeof priority !== "number" || !Number.isInteger(priority) || priority < 0 || priority > 9)
    )
      throw bad(`${key}.${name}.priority`, "must be an integer 0-9");
    const ttl = r.timeToLiveSecs;
    if (ttl !== undefined && (typeof ttl !== "number" || !Number.isInteger(ttl) || (ttl < 1 && ttl !== -1)))
      throw bad(`${key}.${name}.timeToLiveSecs`, "must be -1 or a positive integer");
    out[name] = { route: r.route, parsed: parse(name, r.route), priority, timeToLiveSecs: ttl };
  }
  return out;
}

function optionalString(key: string, v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") throw bad(key, "must be a non-empty string");
  return v;
}

function positive(key: string, v: unknown, dflt: number | undefined): number | undefined {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) throw bad(key, "must be a positive integer");
  return v;
}

/**
 * Most unacknowledged messages per link: half of the link's 32,767 packet ids (the SDK's
 * 1..0x7FFF, `mqtt-client.ts:PACKET_IDS`), so its twin and method traffic always finds a free one.
 */
const MAX_WINDOW = 16_384;

function parentWindow(v: unknown): number {
  const window = positive("parent.window", v, 100) as number;
  if (window > MAX_WINDOW) throw bad("parent.window", `must be at most ${MAX_WINDOW}`);
  return window;
}

function parentConfig(raw: unknown): ParentConfig {
  if (!isObject(raw)) throw bad("parent", "must be an object");
  known("parent.", raw, [
    "type",
    "hostname",
    "hubHostname",
    "port",
    "httpsPort",
    "deviceId",
    "sharedAccessKey",
    "certFile",
    "keyFile",
    "caFile",
    "username",
    "password",
    "topic",
    "window",
    "order",
    "maxMessagesPerSec",
    "scopeRefreshSecs",
    "maxBackoffMs",
    "keepaliveSecs",
    "ackTimeoutMs",
  ]);
  const hostname = raw.hostname;
  if (typeof hostname !== "string" || !/^[A-Za-z0-9.-]{1,253}$/.test(hostname))
    throw bad("parent.hostname", "must be a DNS name");
  const hubHostname = raw.hubHostname ?? hostname;
  if (typeof hubHostname !== "string" || !/^[A-Za-z0-9.-]{1,253}$/.test(hubHostname))
    throw bad("parent.hubHostname", "must be a DNS name");
  // Unset, the kind follows the hub's name: an Azure IoT Hub name is never one of ours, so
  // nothing of ours is sent there; any other name is a root of ours (every config before
  // the kinds were told apart).
  const type = raw.type ?? (AZURE_IOT_HUB.test(hubHostname) ? "iothub" : "edgehub");
  if (type !== "edgehub" && type !== "iothub" && type !== "mqtt")
    throw bad("parent.type", 'must be "edgehub", "iothub" or "mqtt"');
  const deviceId = optionalString("parent.deviceId", raw.deviceId);
  if (deviceId === undefined) throw bad("parent.deviceId", "is required");
  const sharedAccessKey = optionalString("parent.sharedAccessKey", raw.sharedAccessKey);
  const certFile = optionalString("parent.certFile", raw.certFile);
  const keyFile = optionalString("parent.keyFile", raw.keyFile);
  if ((certFile === undefined) !== (keyFile === undefined))
    throw bad("parent.certFile", "and parent.keyFile go together");
  if (type !== "mqtt" && sharedAccessKey === undefined && certFile === undefined)
    throw bad("parent.sharedAccessKey", "or parent.certFile + parent.keyFile is required");
  if (sharedAccessKey !== undefined && Buffer.from(sharedAccessKey, "base64").length < 16)
    throw bad("parent.sharedAccessKey", "must be base64 of at least 16 bytes");
  const order = raw.order ?? "stored";
  if (order !== "stored" && order !== "live-first")
    throw bad("parent.order", 'must be "stored" or "live-first"');
  const topic = optionalString("parent.topic", raw.topic) ?? "edgehub/{deviceId}/messages/events";
  return {
    type,
    hostname,
    hubHostname,
    port: port("parent.port", raw.port, 8883),
    httpsPort: port("parent.httpsPort", raw.httpsPort, 443),
    deviceId,
    sharedAccessKey,
    certFile,
    keyFile,
    caFile: optionalString("parent.caFile", raw.caFile),
    username: optionalString("parent.username", raw.username),
    password: optionalString("parent.password", raw.password),
    topic,
    window: parentWindow(raw.window),
    order,
    maxMessagesPerSec: positive("parent.maxMessagesPerSec", raw.maxMessagesPerSec, undefined),
    scopeRefreshSecs: positive("parent.scopeRefreshSecs", raw.scopeRefreshSecs, 3600) as number,
    maxBackoffMs: positive("parent.maxBackoffMs", raw.maxBackoffMs, 1000) as number,
    keepaliveSecs: positive("parent.keepaliveSecs", raw.keepaliveSecs, 30) as number,
    ackTimeoutMs: positive("parent.ackTimeoutMs", raw.ackTimeoutMs, 15_000) as number,
  };
}
