/**
 * Hub configuration: IoT Edge's key names where one exists, defaults for an embedded
 * root hub, and validation that names the offending key.
 */
import { hostname as osHostname } from "node:os";
import { resolve } from "node:path";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { LogLevel } from "../log.js";

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
  };
  /** Edge devices may be children of other edge devices (nested gateways). Default false. */
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
    storeLimits?: { maxSizeBytes?: number };
  };
  logLevel?: LogLevel;
}

/** A validated configuration with defaults applied. */
export interface HubConfig {
  hostname: string;
  dataDir: string;
  listen: { host: string; mqtts: number; https: number };
  eventsRetentionSecs: number;
  trustedDeviceCaFiles: string[];
  allowNesting: boolean;
  tls: { certFile: string; keyFile: string; caFile: string } | undefined;
  timeToLiveSecs: number;
  maxSizeBytes: number;
  logLevel: LogLevel;
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
    "logLevel",
  ]);
  const hostname = raw.hostname ?? osHostname();
  if (typeof hostname !== "string" || !/^[A-Za-z0-9.-]{1,253}$/.test(hostname))
    throw bad("hostname", "must be a DNS name");
  const dataDir = raw.dataDir ?? "./edgehub-data";
  if (typeof dataDir !== "string" || dataDir === "") throw bad("dataDir", "must be a path");
  const listen = raw.listen ?? {};
  if (!isObject(listen)) throw bad("listen", "must be an object");
  known("listen.", listen, ["host", "mqtts", "https"]);
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
  const sf = raw.storeAndForwardConfiguration ?? {};
  if (!isObject(sf)) throw bad("storeAndForwardConfiguration", "must be an object");
  const ttl = sf.timeToLiveSecs ?? 7200;
  if (ttl !== -1 && (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1)) {
    throw bad("storeAndForwardConfiguration.timeToLiveSecs", "must be -1 or a positive integer");
  }
  const limits = sf.storeLimits ?? {};
  if (!isObject(limits)) throw bad("storeAndForwardConfiguration.storeLimits", "must be an object");
  const max = limits.maxSizeBytes ?? 10 * 2 ** 30;
  if (typeof max !== "number" || !Number.isSafeInteger(max) || max < 1) {
    throw bad("storeAndForwardConfiguration.storeLimits.maxSizeBytes", "must be a positive integer");
  }
  const retention = raw.eventsRetentionSecs ?? 86_400;
  if (typeof retention !== "number" || !Number.isInteger(retention) || retention < 1) {
    throw bad("eventsRetentionSecs", "must be a positive integer");
  }
  const cas = raw.trustedDeviceCaFiles ?? [];
  if (!Array.isArray(cas) || cas.some((f) => typeof f !== "string"))
    throw bad("trustedDeviceCaFiles", "must be a list of paths");
  const allowNesting = raw.allowNesting ?? false;
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
    },
    eventsRetentionSecs: retention,
    trustedDeviceCaFiles: cas as string[],
    allowNesting,
    tls,
    timeToLiveSecs: ttl as number,
    maxSizeBytes: max,
    logLevel: logLevel as LogLevel,
  };
}
