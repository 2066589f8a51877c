/**
 * One-time sync of the device scope, then refreshes: fetches from the parent every
 * identity this hub must authenticate on its own (its modules, its children and theirs,
 * nested edges' subtrees) and makes the local registry hold exactly that. The registry
 * is sealed at rest, so the cache is encrypted; it is what clients are checked against
 * while the parent is unreachable, including across restarts.
 */
import https from "node:https";
import type { Device, Module, Registry } from "../auth/registry.js";
import type { ParentConfig } from "../config/config.js";
import { isJsonObject, own, parseJson } from "../json.js";
import type { Logger } from "../log.js";
import { scopePath } from "../service/scope.js";
import type { ParentCredentials } from "./credentials.js";
import { deviceFromJson, isSkipped, moduleFromJson } from "./scope-records.js";

/** Devices asked for per page. */
const PAGE = 500;
/**
 * Pages one sync follows at most: a parent that keeps giving links is cut off here and
 * the sync fails (nothing applied). At {@link PAGE} devices a page this is far past
 * {@link MAX_SCOPE_RECORDS}; a parent paging by IoT Hub's default of 100 still fits.
 */
export const MAX_SCOPE_PAGES = 100;
/**
 * Records (devices and modules, valid or not) one sync reads at most. Every page is held
 * until the last one has come, so the registry is replaced from a whole scope or not at
 * all; this cap (with the bounded fields of `scope-records.ts`) bounds what is held. A
 * larger scope fails the sync, logged, and the cached one stays.
 */
export const MAX_SCOPE_RECORDS = 10_000;
/** Bytes of one page's body, at most; the download is cut off past it and the sync fails. */
export const MAX_SCOPE_PAGE_BYTES = 8 * 1024 * 1024;
/** Longest `continuationLink` followed. */
const MAX_LINK_CHARS = 2048;
/** Skipped records logged one by one per sync; the rest are counted in `scope-synced`. */
const MAX_SKIPS_LOGGED = 50;
/** Least time between syncs asked for by failed logins. */
const ON_DEMAND_MS = 10_000;
/** Silence on the socket that ends a call. */
const TIMEOUT_MS = 15_000;
/** Whole time a page may take: a trickle of bytes never trips the silence timeout. */
const PAGE_DEADLINE_MS = 60_000;

/** One page as the parent answered it, its shape checked (records not yet). */
interface ScopePage {
  devices: unknown[];
  modules: unknown[];
  continuationLink: unknown;
}

function pageOf(body: unknown): ScopePage {
  const devices = own(body, "devices") ?? [];
  const modules = own(body, "modules") ?? [];
  if (!isJsonObject(body) || !Array.isArray(devices) || !Array.isArray(modules))
    throw new Error("a scope page is not {devices: [...], modules: [...], continuationLink}");
  return { devices, modules, continuationLink: own(body, "continuationLink") ?? null };
}

/** Resolves relative links only: a link that names a host leaves this origin. */
const NO_HOST = "https://parent.invalid";

function decoded(path: string): string | undefined {
  try {
    return decodeURIComponent(path);
  } catch {
    return undefined;
  }
}

/**
 * `link` as the path and query to request, when it is the scope call at `base` with a query,
 * as a path on the parent (printable ASCII, bounded); undefined otherwise.
 */
function sameCall(link: string, base: string): string | undefined {
  if (link.length > MAX_LINK_CHARS || !/^\/[\x21-\x7e]*$/.test(link)) return undefined;
  let url: URL;
  try {
    url = new URL(link, NO_HOST);
  } catch {
    return undefined;
  }
  const path = decoded(url.pathname);
  const same =
    url.origin === NO_HOST && path !== undefined && path === decoded(base) && url.search.length > 1;
  // What was checked is what is sent: dot segments resolved, no fragment.
  return same ? `${url.pathname}${url.search}` : undefined;
}

/** A record's id for the log: bounded, whatever the parent sent. */
function idOf(raw: unknown, key: string): string {
  const v = own(raw, key);
  return typeof v === "string" ? v.slice(0, 140) : typeof v;
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
    const devices = new Map<string, Device>();
    const modules = new Map<string, Module>();
    let skipped = 0;
    const skip = (kind: string, raw: unknown, reason: string) => {
      if (++skipped <= MAX_SKIPS_LOGGED)
        this.#log.log("warn", "scope-record-skipped", {
          kind,
          deviceId: idOf(raw, "deviceId"),
          ...(kind === "module" ? { moduleId: idOf(raw, "moduleId") } : {}),
          reason,
        });
    };
    const base = scopePath(this.#parent.deviceId);
    const followed = new Set<string>();
    let path: string | null = `${base}?deviceCount=${PAGE}&api-version=2021-04-12`;
    let records = 0;
    try {
      while (path !== null) {
        if (followed.size >= MAX_SCOPE_PAGES)
          throw new Error(`the scope has more than ${MAX_SCOPE_PAGES} pages (MAX_SCOPE_PAGES)`);
        followed.add(path);
        const page = pageOf(await this.#get(path));
        records += page.devices.length + page.modules.length;
        if (records > MAX_SCOPE_RECORDS)
          throw new Error(`the scope has more than ${MAX_SCOPE_RECORDS} records (MAX_SCOPE_RECORDS)`);
        for (const raw of page.devices) {
          const d = deviceFromJson(raw);
          if (isSkipped(d)) skip("device", raw, d.skipped);
          else if (devices.has(d.deviceId)) skip("device", raw, "the scope has this deviceId twice");
          else devices.set(d.deviceId, d);
        }
        for (const raw of page.modules) {
          const m = moduleFromJson(raw);
          const key = isSkipped(m) ? "" : `${m.deviceId}/${m.moduleId}`;
          if (isSkipped(m)) skip("module", raw, m.skipped);
          else if (modules.has(key)) skip("module", raw, "the scope has this module twice");
          else modules.set(key, m);
        }
        path = this.#next(page.continuationLink, base, followed);
      }
    } catch (err) {
      this.#log.log("warn", "scope-sync-failed", { reason: (err as Error).message });
      return false;
    }
    // A module comes with its device; one without it would have no device to log in under.
    for (const [key, m] of modules)
      if (!devices.has(m.deviceId)) {
        modules.delete(key);
        skip("module", m, "its device is not in the scope");
      }
    if (!devices.has(this.#parent.deviceId)) {
      this.#log.log("error", "scope-sync-failed", { reason: "the parent's scope does not contain this hub" });
      return false;
    }
    const changed = await this.#registry.applyScope([...devices.values()], [...modules.values()]);
    this.lastSyncedAt = Date.now();
    this.#log.log("info", "scope-synced", { devices: devices.size, modules: modules.size, changed, skipped });
    return true;
  }

  /**
   * The next page's path: null after the last. A link must be this scope call again on the
   * parent (a path, never another host or another call; escapes compared decoded, as
   * parents differ in what they escape), and never one already followed.
   */
  #next(link: unknown, base: string, followed: Set<string>): string | null {
    if (link === null || link === "") return null;
    const path = typeof link === "string" ? sameCall(link, base) : undefined;
    if (path === undefined)
      throw new Error(
        `continuationLink is not a path of this scope call on the parent: ${typeof link === "string" ? JSON.stringify(link.slice(0, 200)) : typeof link}`,
      );
    if (followed.has(path)) throw new Error("continuationLink loops to a page already read");
    return path;
  }

  /** One page's body, parsed: at most {@link MAX_SCOPE_PAGE_BYTES}, within {@link PAGE_DEADLINE_MS}. */
  #get(path: string): Promise<unknown> {
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
          let bytes = 0;
          res.on("data", (c: Buffer) => {
            bytes += c.length;
            if (bytes > MAX_SCOPE_PAGE_BYTES)
              req.destroy(
                new Error(`a scope page is over ${MAX_SCOPE_PAGE_BYTES} bytes (MAX_SCOPE_PAGE_BYTES)`),
              );
            else chunks.push(c);
          });
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            if (res.statusCode !== 200)
              return reject(new Error(`scope call answered ${res.statusCode}: ${text.slice(0, 200)}`));
            try {
              resolve(parseJson(text));
            } catch {
              reject(new Error("scope call answered with something other than JSON"));
            }
          });
          res.on("error", reject);
        },
      );
      const deadline = setTimeout(
        () => req.destroy(new Error(`a scope page took over ${PAGE_DEADLINE_MS} ms`)),
        PAGE_DEADLINE_MS,
      );
      req.on("close", () => clearTimeout(deadline));
      req.on("timeout", () => req.destroy(new Error(`no answer from the parent in ${TIMEOUT_MS} ms`)));
      req.on("error", reject);
      req.end();
    });
  }
}
