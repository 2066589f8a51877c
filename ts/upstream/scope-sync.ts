/**
 * One-time sync of the device scope, then refreshes: fetches from the parent every
 * identity this hub must authenticate on its own (its modules, its children and theirs,
 * nested edges' subtrees) and makes the local registry hold exactly that. The registry
 * is sealed at rest, so the cache is encrypted; it is what clients are checked against
 * while the parent is unreachable, including across restarts.
 */
import https from "node:https";
import type { Authentication, Device, Module, Registry } from "../auth/registry.js";
import type { ParentConfig } from "../config/config.js";
import { parseJson } from "../json.js";
import type { Logger } from "../log.js";
import { scopePath } from "../service/scope.js";
import type { ParentCredentials } from "./credentials.js";

const PAGE = 500;
/** Least time between syncs asked for by failed logins. */
const ON_DEMAND_MS = 10_000;
const TIMEOUT_MS = 15_000;

interface ScopePage {
  devices?: Record<string, unknown>[];
  modules?: Record<string, unknown>[];
  continuationLink?: string | null;
}

function authentication(raw: unknown): Authentication {
  const a = (raw ?? {}) as Record<string, unknown>;
  const type = (a.type as Authentication["type"]) ?? "sas";
  const out: Authentication = { type };
  const k = a.symmetricKey as { primaryKey?: string | null; secondaryKey?: string | null } | undefined;
  if (k?.primaryKey)
    out.symmetricKey = { primaryKey: k.primaryKey, secondaryKey: k.secondaryKey ?? k.primaryKey };
  const t = a.x509Thumbprint as
    | { primaryThumbprint?: string | null; secondaryThumbprint?: string | null }
    | undefined;
  if (t?.primaryThumbprint)
    out.x509Thumbprint = {
      primaryThumbprint: t.primaryThumbprint,
      secondaryThumbprint: t.secondaryThumbprint ?? null,
    };
  return out;
}

/** A device as the parent's JSON has it. */
export function deviceFromJson(j: Record<string, unknown>): Device {
  const d: Device = {
    deviceId: String(j.deviceId),
    generationId: String(j.generationId ?? ""),
    etag: String(j.etag ?? ""),
    status: j.status === "disabled" ? "disabled" : "enabled",
    authentication: authentication(j.authentication),
    capabilities: { iotEdge: (j.capabilities as { iotEdge?: boolean } | undefined)?.iotEdge === true },
    parentScopes: Array.isArray(j.parentScopes) ? j.parentScopes.map(String) : [],
  };
  if (typeof j.statusReason === "string") d.statusReason = j.statusReason;
  if (typeof j.deviceScope === "string" && j.deviceScope !== "") d.deviceScope = j.deviceScope;
  return d;
}

/** A module as the parent's JSON has it. */
export function moduleFromJson(j: Record<string, unknown>): Module {
  const m: Module = {
    deviceId: String(j.deviceId),
    moduleId: String(j.moduleId),
    generationId: String(j.generationId ?? ""),
    etag: String(j.etag ?? ""),
    authentication: authentication(j.authentication),
  };
  if (typeof j.managedBy === "string") m.managedBy = j.managedBy;
  return m;
}

/** Fetches and applies the device scope. */
export class ScopeSync {
  readonly #parent: ParentConfig;
  readonly #credentials: ParentCredentials;
  readonly #registry: Registry;
  readonly #log: Logger;
  #running: Promise<boolean> | undefined;
  /** When the last sync completed (ms since the epoch), if ever in this process. */
  lastSyncedAt: number | undefined;
  #lastAskedAt = 0;

  constructor(parent: ParentConfig, credentials: ParentCredentials, registry: Registry, log: Logger) {
    this.#parent = parent;
    this.#credentials = credentials;
    this.#registry = registry;
    this.#log = log;
  }

  /**
   * A login failed for an identity this hub does not know, or with keys it does not have:
   * the parent may know better. Syncs in the background, at most once per 10 s; the
   * failed login itself is refused at once, and the client's retry finds the new identity.
   */
  requestSync(): void {
    const now = Date.now();
    if (now - this.#lastAskedAt < ON_DEMAND_MS) return;
    this.#lastAskedAt = now;
    void this.sync();
  }

  /** Syncs now (joins a sync already running); resolves true on success, false if the parent could not be reached. */
  sync(): Promise<boolean> {
    this.#running ??= this.#sync().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #sync(): Promise<boolean> {
    const devices: Device[] = [];
    const modules: Module[] = [];
    let path: string | null =
      `${scopePath(this.#parent.deviceId)}?deviceCount=${PAGE}&api-version=2021-04-12`;
    try {
      while (path) {
        const page = await this.#get(path);
        for (const d of page.devices ?? []) devices.push(deviceFromJson(d));
        for (const m of page.modules ?? []) modules.push(moduleFromJson(m));
        path = page.continuationLink ?? null;
      }
    } catch (err) {
      this.#log.log("warn", "scope-sync-failed", { reason: (err as Error).message });
      return false;
    }
    if (!devices.some((d) => d.deviceId === this.#parent.deviceId)) {
      this.#log.log("error", "scope-sync-failed", { reason: "the parent's scope does not contain this hub" });
      return false;
    }
    const changed = await this.#registry.applyScope(devices, modules);
    this.lastSyncedAt = Date.now();
    this.#log.log("info", "scope-synced", { devices: devices.length, modules: modules.length, changed });
    return true;
  }

  #get(path: string): Promise<ScopePage> {
    const token = this.#credentials.token();
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: this.#parent.hostname,
          port: this.#parent.httpsPort,
          path,
          method: "GET",
          ...this.#credentials.tls(),
          headers: token ? { authorization: token } : {},
          timeout: TIMEOUT_MS,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            if (res.statusCode !== 200)
              return reject(new Error(`scope call answered ${res.statusCode}: ${text}`));
            try {
              resolve(parseJson(text) as ScopePage);
            } catch {
              reject(new Error("scope call answered with something other than JSON"));
            }
          });
          res.on("error", reject);
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer from the parent in ${TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end();
    });
  }
}
