/**
 * One identity from the parent, when a login arrives that this hub's scope cache cannot
 * place (an unknown id, or keys it does not have): the parent is asked for that identity
 * alone instead of the whole scope, as Microsoft's edge hub refreshes an identity on demand.
 *
 * - **nested** (its default): `POST /devices/{this edge}/modules/$edgeHub/getDeviceAndModuleOnBehalfOf?api-version=2020-06-30-preview`
 *   with the origin edge in a header and `{targetDeviceId, targetModuleId?, authChain}`
 *   (Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/NestedDeviceScopeApiClient.cs#GetIdentityOnBehalfOf).
 *   For a login that arrived here the origin is this edge and the chain its own
 *   (`GetEdgeAuthChain("{edge}/$edgeHub")` = `{edge}` for the actor); for a child edge's ask
 *   passed on, the origin is that child's origin and the chain the child's, then this edge.
 * - **legacy**: `GET /devices/{this edge}/modules/$edgeHub/deviceAndModuleInDeviceScope?targetDeviceId=&targetModuleId=&api-version=2018-08-30-preview`
 *   (`DeviceScopeApiClient.cs#InScopeTargetIdentityUriFormat`), when the parent answered the
 *   POST 404 or 405 (an older parent), or the scope sync found it legacy; then for the process.
 *
 * Both with the `$edgeHub` token and Microsoft's retries (ts/upstream/scope-http.ts). Only
 * the identity asked for (and a module's device) is taken, and only if it hangs in this
 * hub's scope: its device is this edge or a child of an edge the cache holds. Bounded: one
 * ask per id per {@link ASK_EVERY_MS}, {@link MAX_IN_FLIGHT} at once (more logins that
 * cannot be placed ask for a whole scope sync, itself at most once per 10 s).
 */
import { type Device, isIdentityId, type Module, type Registry } from "../auth/registry.js";
import type { ParentConfig } from "../config/config.js";
import type { Logger } from "../log.js";
import { inScopeTargetPath, ORIGIN_EDGE_HEADER, onBehalfOfPath } from "../service/scope-identity.js";
import type { ParentCredentials } from "./credentials.js";
import { noRoute, parentScopeCall, type ScopeRequest, scopeBackoffMs } from "./scope-http.js";
import { deviceFromJson, isSkipped, moduleFromJson, pageOf } from "./scope-records.js";
import { LEGACY_API, NESTED_API, type ScopeSync } from "./scope-sync.js";

/** Least time between two asks for one id. */
export const ASK_EVERY_MS = 10_000;
/** Asks running at once, at most. */
export const MAX_IN_FLIGHT = 4;
/** Ids remembered for {@link ASK_EVERY_MS} (the oldest forgotten first). */
const MAX_REMEMBERED = 1024;

/** Asks the parent for single identities of this hub's scope. */
export class ScopeIdentity {
  readonly #parent: ParentConfig;
  readonly #credentials: ParentCredentials;
  readonly #registry: Registry;
  readonly #scope: ScopeSync;
  readonly #log: Logger;
  readonly #retryDelayMs: (retry: number) => number;
  /** When each id was last asked for (insertion order is age). */
  readonly #asked = new Map<string, number>();
  #inFlight = 0;
  /** The parent answered the POST 404/405: the legacy call from now on. */
  #legacy = false;
  /**
   * A child edge asked this hub for an identity its cache lacks (the service API's
   * `refreshIdentity`): asked of the parent on its behalf, within the same bounds as a login's.
   */
  readonly fetchFor = async (
    deviceId: string,
    moduleId: string | undefined,
    below: string[],
  ): Promise<boolean> =>
    this.#mayAsk(`${below.join(";")}>${deviceId}/${moduleId ?? ""}`) === "yes" &&
    this.fetch(deviceId, moduleId, below);

  constructor(
    parent: ParentConfig,
    credentials: ParentCredentials,
    registry: Registry,
    scope: ScopeSync,
    log: Logger,
    options: { retryDelayMs?: (retry: number) => number } = {},
  ) {
    this.#parent = parent;
    this.#credentials = credentials;
    this.#registry = registry;
    this.#scope = scope;
    this.#log = log;
    this.#retryDelayMs = options.retryDelayMs ?? ((retry) => scopeBackoffMs(retry));
  }

  /**
   * A login as `clientId` (`device` or `device/module`, as the client sent it) could not be
   * placed: asks for it in the background. An id that is no identity id is not asked for.
   */
  request(clientId: string): void {
    const [deviceId, moduleId, ...rest] = clientId.split("/");
    if (rest.length > 0 || !isIdentityId(deviceId) || (moduleId !== undefined && !isIdentityId(moduleId)))
      return;
    const may = this.#mayAsk(clientId);
    if (may === "busy") this.#scope.requestSync();
    if (may === "yes") void this.fetch(deviceId, moduleId);
  }

  /** Whether `key` may be asked for now (and if so, noted as asked). */
  #mayAsk(key: string): "yes" | "recently" | "busy" {
    const now = Date.now();
    if (now - (this.#asked.get(key) ?? Number.NEGATIVE_INFINITY) < ASK_EVERY_MS) return "recently";
    if (this.#inFlight >= MAX_IN_FLIGHT) return "busy";
    this.#asked.delete(key);
    this.#asked.set(key, now);
    if (this.#asked.size > MAX_REMEMBERED) this.#asked.delete(this.#asked.keys().next().value as string);
    return "yes";
  }

  /**
   * Asks now; resolves true when the identity came and is in the cache, false otherwise
   * (logged). `below`: for a child edge's own ask this hub passes on (as Microsoft's parent
   * refreshes on behalf of it first), the child's chain `{origin};…;{child}`; this hub's id
   * is appended, so the chain ends with the actor.
   */
  async fetch(deviceId: string, moduleId: string | undefined, below: string[] = []): Promise<boolean> {
    this.#inFlight++;
    try {
      const page = pageOf(await this.#ask(deviceId, moduleId, [...below, this.#parent.deviceId]));
      const taken = await this.#take(page.devices, page.modules, deviceId, moduleId);
      this.#log.log("info", "scope-identity", { deviceId, moduleId, found: taken });
      return taken;
    } catch (err) {
      this.#log.log("warn", "scope-identity-failed", {
        deviceId,
        moduleId,
        reason: (err as Error).message.slice(0, 200),
      });
      return false;
    } finally {
      this.#inFlight--;
    }
  }

  async #ask(deviceId: string, moduleId: string | undefined, chain: string[]): Promise<unknown> {
    const actor = this.#parent.deviceId;
    if (!this.#legacy && this.#scope.form !== "legacy") {
      // Field order and the omitted null module as Newtonsoft writes IdentityOnBehalfOfRequest.
      const body = JSON.stringify({
        targetDeviceId: deviceId,
        ...(moduleId === undefined ? {} : { targetModuleId: moduleId }),
        authChain: chain.join(";"),
      });
      try {
        return await this.#call({
          method: "POST",
          path: `${onBehalfOfPath(actor)}?api-version=${NESTED_API}`,
          body,
          headers: { [ORIGIN_EDGE_HEADER]: chain[0] as string },
        });
      } catch (err) {
        // An older parent without the route: the legacy call, for this parent from now on.
        if (!noRoute(err)) throw err;
        this.#legacy = true;
        this.#log.log("info", "scope-identity-form", { form: "legacy", reason: err.message.slice(0, 200) });
      }
    }
    const query = `targetDeviceId=${encodeURIComponent(deviceId)}&targetModuleId=${encodeURIComponent(moduleId ?? "")}`;
    return this.#call({
      method: "GET",
      path: `${inScopeTargetPath(actor)}?${query}&api-version=${LEGACY_API}`,
    });
  }

  /**
   * Puts the identity asked for into the cache: the device when its parent is this edge or
   * an edge the cache holds (or it is this edge), a module when its device is here or came
   * with it. Anything else in the answer is not taken.
   */
  async #take(
    rawDevices: unknown[],
    rawModules: unknown[],
    deviceId: string,
    moduleId: string | undefined,
  ): Promise<boolean> {
    let device: Device | undefined;
    for (const raw of rawDevices) {
      const d = deviceFromJson(raw);
      if (!isSkipped(d) && d.deviceId === deviceId) device = d;
    }
    let module: Module | undefined;
    for (const raw of rawModules) {
      const m = moduleFromJson(raw);
      if (!isSkipped(m) && m.deviceId === deviceId && m.moduleId === moduleId) module = m;
    }
    if (device && !this.#placeable(device)) device = undefined;
    if (moduleId !== undefined && !module) return false;
    if (!device && !(module && this.#registry.getDevice(deviceId))) return false;
    await this.#registry.applyIdentities(device ? [device] : [], module ? [module] : []);
    return true;
  }

  /** True for this edge itself, or a device whose parent edge is this edge or one the cache holds. */
  #placeable(d: Device): boolean {
    if (d.deviceId === this.#parent.deviceId) return true;
    const parentScope = d.parentScopes[0];
    if (parentScope === undefined) return false;
    return this.#registry
      .listDevices()
      .some((e) => e.capabilities.iotEdge && e.deviceScope === parentScope && e.status === "enabled");
  }

  /** One call with Microsoft's retries; a fresh token for every attempt. */
  #call(request: Omit<ScopeRequest, "token">): Promise<unknown> {
    return parentScopeCall(this.#parent, this.#credentials, request, this.#retryDelayMs, this.#log);
  }
}
