/**
 * The hub's side of its parent: the presence link, the forwarder draining `$upstream`,
 * and the device scope sync. Emits `online` / `offline` as the presence link comes and
 * goes; on every return the forwarder resumes at once and the scope is fetched again.
 * Towards a hub, nothing logs in before this edge's `$edgeHub` keys are in hand (sealed
 * from an earlier start, or fetched from the parent); messages wait in the store meanwhile.
 */
import { EventEmitter } from "node:events";
import type { Registry } from "../auth/registry.js";
import type { SecretBox } from "../auth/secret-box.js";
import type { ParentConfig } from "../config/config.js";
import type { DeviceDelivery } from "../delivery/device-delivery.js";
import { ErrorCodes } from "../errors.js";
import type { Logger } from "../log.js";
import type { DirectMethods } from "../methods/direct-methods.js";
import type { MessageStore } from "../store/index.js";
import type { Twins } from "../twin/twins.js";
import { UPSTREAM_QUEUE, UPSTREAM_QUEUES } from "../vocabulary.js";
import { C2dRelay } from "./c2d-relay.js";
import { ParentCredentials } from "./credentials.js";
import { EdgeHubModule } from "./edgehub-module.js";
import { forwardIds, storeIncarnation } from "./forward-id.js";
import { Forwarder, type ForwarderStats, zeroStats } from "./forwarder.js";
import { IotHubUplink } from "./iothub-uplink.js";
import type { Link } from "./link.js";
import { MethodRelay } from "./method-relay.js";
import { MqttUplink } from "./mqtt-uplink.js";
import { ParentModules } from "./parent-modules.js";
import { RateLimit } from "./rate-limit.js";
import { ScopeIdentity } from "./scope-identity.js";
import { ScopeSync } from "./scope-sync.js";
import type { EdgeHubSettings } from "./settings.js";
import { TwinSync } from "./twin-sync.js";

/** Link to the parent, forwarding and scope sync. */
export class Upstream extends EventEmitter<{ online: []; offline: [] }> {
  /** The forwarder of messages whose route gives no priority (all of them without routes). */
  readonly forwarder: Forwarder;
  /** Every forwarder, highest priority first: `$upstream/p0` … `$upstream/p9`, then `$upstream`. */
  readonly forwarders: Forwarder[];
  /** Absent towards a plain MQTT broker (it has no registry). */
  readonly scope: ScopeSync | undefined;
  /** Single identities asked of the parent when a login cannot be placed (towards a hub). */
  readonly scopeIdentity: ScopeIdentity | undefined;
  /** Module identity writes of child edges, forwarded to the parent (towards a hub). */
  readonly parentModules: ParentModules | undefined;
  readonly #link: Link;
  /** This edge's `$edgeHub` keys (absent towards a broker). */
  readonly edgeHubModule: EdgeHubModule | undefined;
  readonly #parent: ParentConfig;
  readonly #store: MessageStore;
  readonly #log: Logger;
  readonly #uplink: IotHubUplink | MqttUplink;
  /** Twins kept in step with the parent (towards a hub, not a broker). */
  twinSync: TwinSync | undefined;
  /** Method calls from the parent to clients here (towards a hub). */
  methodRelay: MethodRelay | undefined;
  /** C2D messages from the parent to child devices here (towards a hub). */
  c2dRelay: C2dRelay | undefined;
  #refresh: NodeJS.Timeout | undefined;
  readonly #registry: Registry;
  /** Clients here following their desired properties live from the parent. */
  readonly #following = new Set<string>();
  /** When the presence link last came up (ms since the epoch). */
  lastOnlineAt: number | undefined;

  constructor(
    parent: ParentConfig,
    store: MessageStore,
    registry: Registry,
    settings: EdgeHubSettings,
    log: Logger,
    secrets: { box: SecretBox; dataDir: string },
  ) {
    super();
    this.#parent = parent;
    this.#store = store;
    this.#registry = registry;
    this.#log = log;
    const credentials = new ParentCredentials(parent);
    const uplink =
      parent.type === "mqtt"
        ? new MqttUplink(parent, credentials, log)
        : new IotHubUplink(parent, credentials, registry, log);
    this.#uplink = uplink;
    this.#link = uplink.edgeLink;
    if (uplink instanceof IotHubUplink) {
      const module = new EdgeHubModule(parent, credentials, secrets.box, secrets.dataDir, log);
      this.edgeHubModule = module;
      credentials.useModuleKey(() => module.keys?.primaryKey);
      // The hub's own link follows its `$edgeHub` twin (the settings).
      settings.follow(uplink.edgeLink);
      // New keys: the links retry with them now.
      module.on("keys", () => uplink.edgeLink.wake());
      // Refused as unauthorized while signing with the keys in hand: they may have been
      // regenerated upstream (HC `CloudProxy.cs#HandleException` takes 4/5 as an expired token).
      uplink.edgeLink.on("refused", (code) => {
        if (code === 4 || code === 5) void module.refused();
      });
    }
    this.scope = parent.type === "mqtt" ? undefined : new ScopeSync(parent, credentials, registry, log);
    this.parentModules = this.scope && new ParentModules(parent, credentials, this.scope, log);
    this.scopeIdentity = this.scope && new ScopeIdentity(parent, credentials, registry, this.scope, log);
    // Revocation upstream reaches this hub when the parent first refuses the client's link
    // (its telemetry, twin or methods), not only at the next scheduled sync.
    if (uplink instanceof IotHubUplink) uplink.identityRefused = () => this.scope?.requestSync();
    // One queue per priority; a queue is read only while every higher one is drained. One
    // rate cap for all of them: it is the uplink's.
    const rate = parent.maxMessagesPerSec === undefined ? undefined : new RateLimit(parent.maxMessagesPerSec);
    const queues = UPSTREAM_QUEUES;
    this.forwarders = [];
    for (const [i, queue] of queues.entries()) {
      const higher = this.forwarders.slice(0, i);
      const f = new Forwarder(
        store,
        queue,
        uplink,
        {
          window: parent.window,
          order: parent.order,
          ...(rate ? { rate } : {}),
          ...(i === 0 ? {} : { mayRead: () => higher.every((h) => h.idle) }),
        },
        log,
      );
      // Drained: the lower priorities may go on.
      f.on("drained", () => {
        for (const lower of this.forwarders.slice(i + 1)) lower.wake();
      });
      this.forwarders.push(f);
    }
    this.forwarder = this.forwarders.at(-1) as Forwarder;
    this.#link.on("up", () => {
      this.lastOnlineAt = Date.now();
      for (const f of this.forwarders) void f.resume();
      this.twinSync?.online();
      void this.scope?.sync();
      this.emit("online");
    });
    this.#link.on("down", () => {
      for (const f of this.forwarders) f.pause();
      this.twinSync?.offline();
      this.emit("offline");
    });
  }

  /**
   * Keeps the hub's twin cache in step with the parent, relays the parent's method calls
   * and C2D messages to the clients here: the devices and modules of this hub's scope,
   * not the hub's own device and runtime modules (towards a hub; a broker has none of it).
   */
  attach(twins: Twins, methods: DirectMethods, delivery: DeviceDelivery): void {
    if (!(this.#uplink instanceof IotHubUplink)) return;
    const registry = this.#registry;
    const own = this.#parent.deviceId;
    const isClient = (clientId: string): boolean => {
      const [deviceId = "", moduleId] = clientId.split("/");
      if (moduleId === undefined) return deviceId !== own && registry.getDevice(deviceId) !== undefined;
      return !moduleId.startsWith("$") && registry.getModule(deviceId, moduleId) !== undefined;
    };
    this.twinSync = new TwinSync(this.#store, twins, this.#uplink, isClient, this.#log);
    this.methodRelay = new MethodRelay(this.#uplink, methods, this.#log);
    if (this.online) this.twinSync.online();
    const relay = new C2dRelay(this.#uplink, delivery, this.#store, registry, isClient, this.#log);
    this.c2dRelay = relay;
    delivery.onCompleted = (clientId, m) => relay.completed(clientId, m);
  }

  /** A client here subscribed to `kind`: what the parent sends it flows while the parent is reachable. */
  subscribed(clientId: string, kind: string): void {
    // C2D sent upstream reaches it (stored here first).
    if (kind === "c2d") this.c2dRelay?.listen(clientId);
    // Desired changes made upstream reach it live.
    if (kind === "twin-desired" && !this.#following.has(clientId)) {
      this.#following.add(clientId);
      this.twinSync?.follow(clientId);
    }
    if (kind === "methods") this.methodRelay?.listen(clientId);
  }

  /** It stopped listening to `kind`: so does its link upstream (the parent answers calls with 404 itself). */
  unsubscribed(clientId: string, kind: string): void {
    if (kind === "twin-desired" && this.#following.delete(clientId)) this.twinSync?.unfollow(clientId);
    if (kind === "methods") this.methodRelay?.unlisten(clientId);
    if (kind === "c2d") this.c2dRelay?.unlisten(clientId);
  }

  /** Brings `clientId`'s twin up to date from the parent (while it is reachable). */
  refreshTwin(clientId: string): Promise<void> {
    return this.twinSync?.refresh(clientId) ?? Promise.resolve();
  }

  /** The client disconnected: nothing is followed upstream for it any more. */
  disconnected(clientId: string): void {
    if (this.#following.delete(clientId)) this.twinSync?.unfollow(clientId);
    this.methodRelay?.unlisten(clientId);
    this.c2dRelay?.unlisten(clientId);
  }

  /**
   * A login here was refused for an identity this hub does not know or whose key does not
   * match: the parent may know it, or its new keys; it is asked for that one.
   */
  loginRefused(code: string, clientId: string): void {
    if (code === ErrorCodes.AUTH_UNKNOWN_IDENTITY || code === ErrorCodes.AUTH_BAD_SIGNATURE)
      this.scopeIdentity?.request(clientId);
  }

  /** Messages were stored in `queue`: its forwarder reads on. */
  stored(queue: string): void {
    for (const f of this.forwarders) if (f.queue === queue) f.wake();
  }

  /** The forwarders' counters, summed. */
  stats(): ForwarderStats {
    const sum = zeroStats();
    for (const f of this.forwarders)
      for (const k of Object.keys(sum) as (keyof ForwarderStats)[]) sum[k] += f.stats[k];
    return sum;
  }

  /** True while the presence link is up. */
  get online(): boolean {
    return this.#link.up;
  }

  /** Starts linking and draining; never waits for the parent (the hub starts offline too). */
  async start(): Promise<void> {
    // Towards a hub of ours, every message carries its forwarder id (the one place it is
    // decided per kind of parent). Azure IoT Hub and Microsoft's edge hub get nothing the
    // device did not set (Microsoft's edge hub sends only the device's own system
    // properties: CloudProxy DeviceClientMessageConverter.cs#FromMessage); a broker has no
    // use for it. The kind is configured, never learnt from the parent's answers.
    if (this.#uplink instanceof IotHubUplink && this.#parent.type === "edgehub")
      this.#uplink.forwardId = forwardIds(
        this.#parent.deviceId,
        await storeIncarnation(this.#store),
        UPSTREAM_QUEUE,
      );
    for (const f of this.forwarders) await f.start();
    const module = this.edgeHubModule;
    if (module && !(await module.load())) {
      // No keys yet: the hub's link starts once they are fetched (it brings the rest up).
      module.once("keys", () => this.#link.start());
      module.ensure();
    } else this.#link.start();
    if (this.scope) {
      this.#refresh = setInterval(() => void this.scope?.sync(), this.#parent.scopeRefreshSecs * 1000);
      this.#refresh.unref();
    }
  }

  close(): void {
    clearInterval(this.#refresh);
    for (const f of this.forwarders) f.close();
    this.twinSync?.close();
    this.methodRelay?.close();
    this.edgeHubModule?.close();
    this.c2dRelay?.close();
    this.#link.close();
  }
}
