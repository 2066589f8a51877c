/**
 * One-time sync of the device scope, then refreshes: fetches from the parent every
 * identity this hub must authenticate on its own (its modules, its children and theirs,
 * nested edges' subtrees) and makes the local registry hold exactly that. The registry
 * is sealed at rest, so the cache is encrypted; it is what clients are checked against
 * while the parent is unreachable, including across restarts.
 *
 * Two wire forms, as Microsoft's edge hub speaks them (docs/upstream-forms.md §6):
 * - **nested** (its default): `POST …/devicesAndModulesInTargetDeviceScope` once per edge,
 *   breadth first from this hub down, each edge's page set covering that edge's direct
 *   scope (`ServiceProxy.NestedServiceIdentitiesIterator`);
 * - **legacy**: `GET …/devicesAndModulesInDeviceScope`, one sequence answering the whole
 *   subtree (`ServiceProxy.ServiceIdentitiesIterator`), used when the parent answers the
 *   POST route 404 or 405 (an older parent), and then for the rest of the process.
 */
import type { Device, Module, Registry } from "../auth/registry.js";
import type { ParentConfig } from "../config/config.js";
import { own } from "../json.js";
import type { Logger } from "../log.js";
import { nestedScopePath, scopePath } from "../service/scope.js";
import type { ParentCredentials } from "./credentials.js";
import { noRoute, parentScopeCall, type ScopeRequest, scopeBackoffMs } from "./scope-http.js";
import {
  deviceFromJson,
  isSkipped,
  legacyNext,
  moduleFromJson,
  nestedNext,
  pageOf,
  type ScopePage,
} from "./scope-records.js";

export { MAX_SCOPE_PAGE_BYTES } from "./scope-http.js";

/** Devices asked for per page (NestedScopeRequest allows 0..1000). */
const PAGE = 500;
/**
 * Pages one sync reads at most, over every edge of the walk: a parent that keeps giving
 * links is cut off here and the sync fails (nothing applied). Each edge of the tree costs
 * at least one page; at {@link PAGE} devices a page this is far past {@link MAX_SCOPE_RECORDS}.
 */
export const MAX_SCOPE_PAGES = 1000;
/**
 * Records (devices and modules, valid or not) one sync reads at most. Every page is held
 * until the last one has come, so the registry is replaced from a whole scope or not at
 * all; this cap (with the bounded fields of `scope-records.ts`) bounds what is held. A
 * larger scope fails the sync, logged, and the cached one stays.
 */
export const MAX_SCOPE_RECORDS = 10_000;
/**
 * Edges in one auth-chain, this hub included: `ServiceIdentityTreeNode.MaxNestingDepth`
 * (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Core/ServiceIdentityTree.cs).
 * An edge found deeper is kept as a record but its own scope is not asked for.
 */
export const MAX_NESTING = 5;
/** api-version of the nested call: `NestedDeviceScopeApiClient.NestedApiVersion`. */
export const NESTED_API = "2020-06-30-preview";
/** api-version of the legacy call: `DeviceScopeApiClient.ApiVersion`. */
export const LEGACY_API = "2018-08-30-preview";
/** Skipped records logged one by one per sync; the rest are counted in `scope-synced`. */
const MAX_SKIPS_LOGGED = 50;
/** Least time between syncs asked for by failed logins. */
const ON_DEMAND_MS = 10_000;

/** Which call the parent answers; unknown until the first sync. */
export type ScopeForm = "nested" | "legacy";

/** Knobs for tests and embedders; the defaults are Microsoft's. */
export interface ScopeSyncOptions {
  /** Wait before retry n (0 for the first), ms; default {@link scopeBackoffMs}. */
  retryDelayMs?: (retry: number) => number;
}

/** One sequence of the nested walk: a target edge, its chain, and the link to its next page. */
interface Step {
  target: string;
  /** `{target};…;{this hub}` (ServiceIdentityTree `MakeAuthChainFromParent`). */
  chain: string[];
  link: string | null;
}

/** A record's id for the log: bounded, whatever the parent sent. */
function idOf(raw: unknown, key: string): string {
  const v = own(raw, key);
  return typeof v === "string" ? v.slice(0, 140) : typeof v;
}

/** What one sync gathers before it applies anything. */
class Gathered {
  readonly devices = new Map<string, Device>();
  readonly modules = new Map<string, Module>();
  /** Which sequence (target edge) each record came from. */
  readonly #from = new Map<string, string>();
  records = 0;
  skipped = 0;
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  skip(kind: string, raw: unknown, reason: string): void {
    if (++this.skipped <= MAX_SKIPS_LOGGED)
      this.#log.log("warn", "scope-record-skipped", {
        kind,
        deviceId: idOf(raw, "deviceId"),
        ...(kind === "module" ? { moduleId: idOf(raw, "moduleId") } : {}),
        reason,
      });
  }

  /**
   * Takes a page's valid records; returns its devices. The same identity from another
   * edge's sequence is expected (a child edge is in its parent's page and heads its own):
   * the first record stays. Twice in one sequence is the parent's error: skipped.
   */
  take(page: ScopePage, sequence: string): Device[] {
    this.records += page.devices.length + page.modules.length;
    if (this.records > MAX_SCOPE_RECORDS)
      throw new Error(`the scope has more than ${MAX_SCOPE_RECORDS} records (MAX_SCOPE_RECORDS)`);
    const found: Device[] = [];
    for (const raw of page.devices) {
      const d = deviceFromJson(raw);
      if (isSkipped(d)) this.skip("device", raw, d.skipped);
      else if (this.#fresh(d.deviceId, sequence, raw, "device", "deviceId")) {
        this.devices.set(d.deviceId, d);
        found.push(d);
      }
    }
    for (const raw of page.modules) {
      const m = moduleFromJson(raw);
      if (isSkipped(m)) this.skip("module", raw, m.skipped);
      else if (this.#fresh(`${m.deviceId}/${m.moduleId}`, sequence, raw, "module", "module"))
        this.modules.set(`${m.deviceId}/${m.moduleId}`, m);
    }
    return found;
  }

  #fresh(key: string, sequence: string, raw: unknown, kind: string, what: string): boolean {
    const from = this.#from.get(`${kind}:${key}`);
    if (from === undefined) {
      this.#from.set(`${kind}:${key}`, sequence);
      return true;
    }
    if (from === sequence) this.skip(kind, raw, `the scope has this ${what} twice`);
    return false;
  }
}

/** Fetches and applies the device scope. */
export class ScopeSync {
  readonly #parent: ParentConfig;
  readonly #credentials: ParentCredentials;
  readonly #registry: Registry;
  readonly #log: Logger;
  readonly #retryDelayMs: (retry: number) => number;
  #running: Promise<boolean> | undefined;
  /** When the last sync completed (ms since the epoch), if ever in this process. */
  lastSyncedAt: number | undefined;
  /**
   * The form this parent answers, once known: nested after a nested walk succeeded, legacy
   * after the first POST of a sync was answered 404 or 405 before any had.
   */
  form: ScopeForm | undefined;
  #lastAskedAt = 0;

  constructor(
    parent: ParentConfig,
    credentials: ParentCredentials,
    registry: Registry,
    log: Logger,
    options: ScopeSyncOptions = {},
  ) {
    this.#parent = parent;
    this.#credentials = credentials;
    this.#registry = registry;
    this.#log = log;
    this.#retryDelayMs = options.retryDelayMs ?? ((retry) => scopeBackoffMs(retry));
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

  /**
   * Syncs once more after any sync running now, which may have read the parent before a
   * change this hub just made there (a module write forwarded for a child edge).
   */
  async resync(): Promise<boolean> {
    await this.#running;
    return this.sync();
  }

  async #sync(): Promise<boolean> {
    const got = new Gathered(this.#log);
    try {
      if (this.form === "legacy") await this.#legacyWalk(got);
      else await this.#nestedWalk(got);
    } catch (err) {
      this.#log.log("warn", "scope-sync-failed", {
        form: this.form ?? "nested",
        reason: (err as Error).message,
      });
      return false;
    }
    // A module comes with its device; one without it would have no device to log in under.
    for (const [key, m] of got.modules)
      if (!got.devices.has(m.deviceId)) {
        got.modules.delete(key);
        got.skip("module", m, "its device is not in the scope");
      }
    if (!got.devices.has(this.#parent.deviceId)) {
      this.#log.log("error", "scope-sync-failed", {
        form: this.form,
        reason: "the parent's scope does not contain this hub",
      });
      return false;
    }
    const changed = await this.#registry.applyScope([...got.devices.values()], [...got.modules.values()]);
    this.lastSyncedAt = Date.now();
    this.#log.log("info", "scope-synced", {
      form: this.form,
      devices: got.devices.size,
      modules: got.modules.size,
      changed,
      skipped: got.skipped,
    });
    return true;
  }

  /**
   * Microsoft's nested walk (`ServiceProxy.NestedServiceIdentitiesIterator#GetNext`): a queue
   * of sequences, this hub first; a page's continuation goes to the back of the queue, and
   * so does every edge device the page names other than its target, with the chain
   * `{edge};{target's chain}`. Every call is a POST to this hub's own path
   * (`NestedDeviceScopeApiClient.cs#GetNestedScopeServiceUri`: "always in the context of the
   * actor") with `{pageSize, continuationLink?, authChain}` (`NestedScopeRequest.cs`).
   * Unlike Microsoft's, an edge is walked once per sync (a parent naming it twice or in a
   * cycle gets no second walk), and one past {@link MAX_NESTING} is not walked.
   */
  async #nestedWalk(got: Gathered): Promise<void> {
    const actor = this.#parent.deviceId;
    const path = `${nestedScopePath(actor)}?api-version=${NESTED_API}`;
    const queue: Step[] = [{ target: actor, chain: [actor], link: null }];
    const walked = new Set([actor]);
    const sent = new Map<string, Set<string>>([[actor, new Set()]]);
    let pages = 0;
    for (let step = queue.shift(); step !== undefined; step = queue.shift()) {
      if (++pages > MAX_SCOPE_PAGES)
        throw new Error(`the scope has more than ${MAX_SCOPE_PAGES} pages (MAX_SCOPE_PAGES)`);
      // Field order and the omitted null link as Newtonsoft writes NestedScopeRequest.
      const body = JSON.stringify({
        pageSize: PAGE,
        ...(step.link === null ? {} : { continuationLink: step.link }),
        authChain: step.chain.join(";"),
      });
      let answer: unknown;
      try {
        answer = await this.#call({ method: "POST", path, body });
      } catch (err) {
        // An older parent without the route: the legacy call, for this parent from now on.
        // A parent that answered the POST before keeps being asked it: a 404 then is an error.
        if (pages === 1 && noRoute(err) && this.form === undefined) {
          this.form = "legacy";
          this.#log.log("info", "scope-form", { form: "legacy", reason: err.message.slice(0, 200) });
          return this.#legacyWalk(got);
        }
        throw err;
      }
      const page = pageOf(answer);
      const found = got.take(page, step.target);
      const links = sent.get(step.target) as Set<string>;
      const link = nestedNext(page.continuationLink, links);
      if (link !== null) {
        links.add(link);
        queue.push({ ...step, link });
      }
      for (const d of found) {
        if (!d.capabilities.iotEdge || walked.has(d.deviceId)) continue;
        walked.add(d.deviceId);
        if (step.chain.length >= MAX_NESTING) {
          this.#log.log("warn", "scope-too-deep", { deviceId: d.deviceId, maxNesting: MAX_NESTING });
          continue;
        }
        sent.set(d.deviceId, new Set());
        queue.push({ target: d.deviceId, chain: [d.deviceId, ...step.chain], link: null });
      }
    }
    this.form = "nested";
  }

  /**
   * The legacy call (`DeviceScopeApiClient.cs#InScopeIdentitiesUriTemplate`): the first page
   * `?deviceCount={n}&continuationToken=&api-version=2018-08-30-preview` (the token formatted
   * from null), then `GET {continuationLink}` as given, one sequence for the whole subtree.
   */
  async #legacyWalk(got: Gathered): Promise<void> {
    const base = scopePath(this.#parent.deviceId);
    const followed = new Set<string>();
    let path: string | null = `${base}?deviceCount=${PAGE}&continuationToken=&api-version=${LEGACY_API}`;
    while (path !== null) {
      if (followed.size >= MAX_SCOPE_PAGES)
        throw new Error(`the scope has more than ${MAX_SCOPE_PAGES} pages (MAX_SCOPE_PAGES)`);
      followed.add(path);
      const page = pageOf(await this.#call({ method: "GET", path }));
      got.take(page, this.#parent.deviceId);
      path = legacyNext(page.continuationLink, base, followed);
    }
  }

  /** One call with Microsoft's retries; a fresh token for every attempt. */
  #call(request: Omit<ScopeRequest, "token">): Promise<unknown> {
    return parentScopeCall(this.#parent, this.#credentials, request, this.#retryDelayMs, this.#log);
  }
}
