import { readFile } from "node:fs/promises";
import type https from "node:https";
import type net from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import type tls from "node:tls";
import type { WebSocketServer } from "ws";
import { AmqpConnection } from "./amqp/connection.js";
import { FeedbackQueue } from "./amqp/service/feedback.js";
import type { AmqpServiceContext } from "./amqp/service/session.js";
import { Authenticator, type PeerCertificate } from "./auth/authenticator.js";
import { Registry } from "./auth/registry.js";
import { SecretBox } from "./auth/secret-box.js";
import { servedChain } from "./certs/chain.js";
import { type HubConfig, type HubConfigInput, loadConfig } from "./config/config.js";
import { ensurePrivateDataDir } from "./config/data-dir.js";
import { DeviceDelivery } from "./delivery/device-delivery.js";
import { ErrorCodes } from "./errors.js";
import { EventLoopLag } from "./event-loop-lag.js";
import { consoleLogger, type Logger, type LogLevel } from "./log.js";
import { DirectMethods } from "./methods/direct-methods.js";
import type { AuthTransport } from "./observe/metrics.js";
import { type Observing, observe } from "./observe/observe.js";
import { Admission, RateLimitedLog } from "./protocol/admission.js";
import type { ClientConnection } from "./protocol/client.js";
import { MqttConnection } from "./protocol/connection.js";
import { createListeners, type Listeners } from "./protocol/listeners.js";
import { Sessions } from "./protocol/sessions.js";
import { followShare, type IdentityShares } from "./routing/identity-shares.js";
import { RouteTable } from "./routing/route-table.js";
import { Router } from "./routing/router.js";
import { ServiceApi } from "./service/api.js";
import { serviceCredential } from "./service/credential.js";
import { MessageStore } from "./store/index.js";
import { Twins } from "./twin/twins.js";
import { EdgeHubSettings } from "./upstream/settings.js";
import { Upstream } from "./upstream/upstream.js";
import { DEAD_LETTER_QUEUE, EVENTS_QUEUE, UPSTREAM_QUEUE, UPSTREAM_QUEUES } from "./vocabulary.js";

/** How long {@link EdgeHub.close} waits for messages being stored to be stored and acknowledged. */
export const CLOSE_GRACE_MS = 5000;

/** Resolves when `p` settles or after `ms`, whichever is first. */
function within(ms: number, p: Promise<unknown> | undefined): Promise<void> {
  if (p === undefined) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A running hub. */
export class EdgeHub {
  readonly config: HubConfig;
  readonly store: MessageStore;
  readonly registry: Registry;
  /** Twins of every device and module. */
  readonly twins: Twins;
  /** Direct method calls to connected devices and modules. */
  readonly methods: DirectMethods;
  /** Cloud-to-device messages and module inputs, queued durably per device or module. */
  readonly delivery: DeviceDelivery;
  /** The CA certificate (PEM) clients must trust, and where it is on disk. */
  readonly caCertificate: string;
  readonly caFile: string;
  /** `HostName=…;SharedAccessKeyName=iothubowner;SharedAccessKey=…` for the service API. */
  readonly serviceConnectionString: string;
  /** Where that string is written (mode 0600). */
  readonly serviceConnectionStringFile: string;
  /** Routes and store limits in force: config, overridden by the parent's `$edgeHub` desired properties. */
  readonly settings: EdgeHubSettings;
  /** The link to the parent and the forwarder; absent on a root hub. */
  readonly upstream: Upstream | undefined;
  readonly #server: tls.Server;
  readonly #amqp: tls.Server;
  readonly #https: https.Server;
  readonly #websockets: WebSocketServer;
  #router: Router | undefined;
  /** Per-identity shares of the quota; undefined: off. */
  #shares: IdentityShares | undefined;
  /** The last change of the share being applied (they apply in order). */
  #sharing: Promise<void> = Promise.resolve();
  /** Clients here following their desired properties live from the parent. */
  readonly #following = new Set<string>();
  readonly #connections = new Map<string, ClientConnection>();
  readonly #sockets = new Set<tls.TLSSocket>();
  /** Connection caps and deadline counters of every listener. */
  readonly #admission: Admission;
  /** The socket each MQTT connection came in on (its TLS socket, or the WebSocket's). */
  readonly #socketOf = new WeakMap<ClientConnection, net.Socket>();
  readonly #lag = new EventLoopLag();
  /** Status board, metrics and the operators' listener. */
  #observing: Observing | undefined;
  #closed = false;

  private constructor(
    config: HubConfig,
    store: MessageStore,
    registry: Registry,
    listeners: Listeners,
    ca: { pem: string; file: string },
    service: { connectionString: string; file: string },
    upstream: Upstream | undefined,
    settings: EdgeHubSettings,
    admission: Admission,
    log: Logger,
  ) {
    this.config = config;
    this.store = store;
    this.registry = registry;
    this.twins = new Twins(store);
    this.methods = new DirectMethods((clientId) => this.#connections.get(clientId), config.limits);
    this.delivery = new DeviceDelivery(store, (clientId) => this.#connections.get(clientId), log);
    this.#server = listeners.mqtt;
    this.#amqp = listeners.amqp;
    this.#https = listeners.https;
    this.#websockets = listeners.websockets;
    this.caCertificate = ca.pem;
    this.caFile = ca.file;
    this.serviceConnectionString = service.connectionString;
    this.serviceConnectionStringFile = service.file;
    this.upstream = upstream;
    this.settings = settings;
    this.#admission = admission;
  }

  /** Starts a hub: opens its store and registry, and listens for MQTT over TLS. */
  static async start(
    input: HubConfigInput = {},
    log: Logger = consoleLogger(input.logLevel),
  ): Promise<EdgeHub> {
    const config = loadConfig(input);
    await ensurePrivateDataDir(config.dataDir, log);
    const material = config.tls
      ? {
          cert: servedChain(await readFile(config.tls.certFile, "utf8")),
          key: await readFile(config.tls.keyFile, "utf8"),
          ca: await readFile(config.tls.caFile, "utf8"),
          caFile: config.tls.caFile,
        }
      : await (await import("./certs/dev-ca.js")).devTls(join(config.dataDir, "certs"), config.hostname);
    const store = await MessageStore.open(join(config.dataDir, "store"), {
      defaultTtlSecs: config.timeToLiveSecs,
      maxSizeBytes: config.maxSizeBytes,
      whenFull: config.whenFull,
    });
    const listening: Array<tls.Server | https.Server> = [];
    let shares: IdentityShares | undefined;
    let observing: Observing | undefined;
    try {
      const box = await SecretBox.fromKeyFile(join(config.dataDir, "secrets.key"));
      const registry = await Registry.open(store, box, { allowNesting: config.allowNesting });
      const service = await serviceCredential(store, box, config);
      const parent = config.parent;
      // Tokens name the hub clients think they talk to: this one, or (through a gateway) its parent.
      const authenticator = new Authenticator(
        registry,
        parent ? [config.hostname, parent.hostname, parent.hubHostname] : [config.hostname],
      );
      // A root keeps device-to-cloud messages as IoT Hub's built-in events; an edge hub
      // stores them for its parent under the store-and-forward TTL.
      // Settings cached from the parent apply before the first client is let in.
      const settings = new EdgeHubSettings(store, config, log);
      await settings.loadCached();
      const upstreamQueue = parent ? UPSTREAM_QUEUE : EVENTS_QUEUE;
      // BrokeredEndpoint("/modules/m/…") names a module of the edge device itself; a root has
      // no device of its own, so there it is a module of the sender's device.
      const routeTable = (routes: HubConfig["routes"]) =>
        new RouteTable(routes, upstreamQueue, (m) => parent?.deviceId ?? m.deviceId, parent !== undefined);
      const router = new Router(
        store,
        routeTable(settings.current.routes),
        parent ? undefined : config.eventsRetentionSecs,
      );
      settings.on("changed", (s) => router.setRoutes(routeTable(s.routes)));
      // Child hubs resend what they had in flight when this hub went away: what is stored
      // already (upstream, or routed to a module input) is recognised after a restart too.
      const routed = (q: string) =>
        q === upstreamQueue || q.startsWith(`${upstreamQueue}/p`) || q.startsWith("$inputs/");
      await router.recall(routed);
      // Each identity's share of the quota, counted in the queues the router fills.
      shares = await followShare(undefined, settings.current.maxSizeBytesPerIdentity, store, routed);
      router.setShares(shares);
      const upstream = parent
        ? new Upstream(parent, store, registry, settings, log, { box, dataDir: config.dataDir })
        : undefined;
      const deviceCas = await Promise.all(config.trustedDeviceCaFiles.map((f) => readFile(f, "utf8")));
      const limits = config.limits;
      // Refusals and timeouts can be caused by anyone: their log lines are rate-limited.
      const quietLog = new RateLimitedLog(log);
      const admission = new Admission(limits, quietLog);
      const listeners = createListeners(
        { cert: material.cert, key: material.key, deviceCas },
        limits,
        admission,
        quietLog,
        {
          mqtt: (socket, peer) => {
            hub.#sockets.add(socket);
            socket.on("close", () => hub.#sockets.delete(socket));
            hub.#socketOf.set(new MqttConnection(socket, context, peer), socket);
          },
          amqp: (socket, peer) => {
            hub.#sockets.add(socket);
            socket.on("close", () => hub.#sockets.delete(socket));
            amqpConnection(socket, socket, peer);
          },
          amqpWebSocket: (stream, socket, peer) => amqpConnection(stream, socket, peer),
          webSocket: (stream, socket, peer) => {
            hub.#socketOf.set(new MqttConnection(stream, context, peer), socket);
          },
          request: (req, res) => api.handle(req, res),
        },
      );
      const hub = new EdgeHub(
        config,
        store,
        registry,
        listeners,
        { pem: material.ca, file: material.caFile },
        service,
        upstream,
        settings,
        admission,
        log,
      );
      hub.#router = router;
      hub.#shares = shares;
      settings.on("changed", (s) => {
        hub.#sharing = hub.#sharing
          .then(async () => {
            hub.#shares = await followShare(hub.#shares, s.maxSizeBytesPerIdentity, store, routed);
            router.setShares(hub.#shares);
          })
          .catch((err: unknown) => log.log("error", "shares-failed", { reason: (err as Error).message }));
      });
      const isClient = (clientId: string): boolean => {
        const [deviceId = "", moduleId] = clientId.split("/");
        // The hub's own device and its runtime modules are not clients here.
        if (moduleId === undefined)
          return deviceId !== parent?.deviceId && registry.getDevice(deviceId) !== undefined;
        return !moduleId.startsWith("$") && registry.getModule(deviceId, moduleId) !== undefined;
      };
      upstream?.attachClients(hub.twins, hub.methods, isClient);
      upstream?.attachDelivery(hub.delivery, isClient);
      registry.on("revoked", (deviceId, moduleId) => {
        for (const [clientId, conn] of hub.#connections) {
          const mine =
            moduleId === undefined
              ? clientId === deviceId ||
                clientId.startsWith(`${deviceId}/`) ||
                conn.principal?.via?.includes(deviceId) === true
              : clientId === `${deviceId}/${moduleId}` ||
                // An edge's `$edgeHub` keys sign its logins on behalf of others: they end too.
                (moduleId === "$edgeHub" && conn.principal?.via?.at(-1) === deviceId);
          if (mine) conn.close("identity-revoked");
        }
      });
      hub.twins.on("desired", (clientId, patch) => hub.#connections.get(clientId)?.desiredChanged(patch));
      // Reported patches feed `/twinChangeNotifications` routes.
      hub.twins.on("reported", (clientId, patch, version) =>
        router.twinChanged(clientId, patch, version, (err) => {
          if (err) log.log("warn", "twin-change-not-routed", { clientId, reason: (err as Error).message });
        }),
      );
      // A root serves IoT Hub's service side over AMQP too: C2D sends and their feedback.
      const amqpService: AmqpServiceContext | undefined = parent
        ? undefined
        : {
            hostname: config.hostname,
            serviceKey: service.key,
            authenticator,
            registry,
            delivery: hub.delivery,
            feedback: new FeedbackQueue(store, registry, log),
            log,
          };
      if (amqpService)
        hub.delivery.onSettled = (id, m, outcome) => amqpService.feedback.settled(id, m, outcome);
      /** An AMQP connection on `stream` (TLS, or a WebSocket over `socket`). */
      const amqpConnection = (stream: Duplex, socket: net.Socket, peer: PeerCertificate | undefined) => {
        // Each identity the connection authenticates counts its socket as authenticated.
        const register = (clientId: string, client: ClientConnection) => {
          hub.#socketOf.set(client, socket);
          context.register(clientId, client);
        };
        new AmqpConnection(stream, { ...context, register, refused: refused("amqp") }, peer, amqpService);
      };
      /** A device-protocol login refused: counted by transport; the parent is asked for the identity. */
      const refused = (transport: AuthTransport) => (code: string, clientId: string) => {
        hub.#observing?.metrics?.authFailed(transport, code);
        // The parent may know this identity, or its new keys: it is asked for that one.
        if (code === ErrorCodes.AUTH_UNKNOWN_IDENTITY || code === ErrorCodes.AUTH_BAD_SIGNATURE)
          upstream?.scopeIdentity?.request(clientId);
      };
      const sessions = new Sessions(store);
      const context = {
        authenticator,
        router,
        twins: hub.twins,
        methods: hub.methods,
        sessions,
        subscribed: (conn: ClientConnection, kind: string) => {
          const principal = conn.principal;
          if ((kind === "c2d" || kind === "module-inputs") && principal)
            hub.delivery.pump(principal.clientId);
          // C2D sent upstream reaches it while the parent is reachable (stored here first).
          if (kind === "c2d" && principal) upstream?.c2dRelay?.listen(principal.clientId);
          // Desired changes made upstream reach it live while the parent is reachable.
          if (kind === "twin-desired" && principal && !hub.#following.has(principal.clientId)) {
            hub.#following.add(principal.clientId);
            upstream?.twinSync?.follow(principal.clientId);
          }
          // Calls waiting for it go now; calls from upstream reach it while the parent is reachable.
          if (kind === "methods" && principal) {
            hub.methods.listening(principal.clientId);
            upstream?.methodRelay?.listen(principal.clientId);
          }
        },
        // It stopped listening: so does its link upstream (the parent answers calls with 404 itself).
        unsubscribed: (conn: ClientConnection, kind: string) => {
          const clientId = conn.principal?.clientId;
          if (clientId === undefined || hub.#connections.get(clientId) !== conn) return;
          if (kind === "twin-desired" && hub.#following.delete(clientId))
            upstream?.twinSync?.unfollow(clientId);
          if (kind === "methods") upstream?.methodRelay?.unlisten(clientId);
          if (kind === "c2d") upstream?.c2dRelay?.unlisten(clientId);
        },
        log,
        refreshTwin: upstream
          ? (clientId: string) => upstream.twinSync?.refresh(clientId) ?? Promise.resolve()
          : undefined,
        refused: refused("mqtt"),
        maxMessageBytes: 256 * 1024,
        connectTimeoutMs: limits.mqttConnectTimeoutMs,
        closedUnauthenticated: (level: LogLevel, reason: string, fields: Record<string, unknown>) => {
          if (reason === "connect-timeout") admission.timedOut("mqttConnect", fields);
          else quietLog.log(level, "client-closed", { reason, ...fields }, `client-closed:${reason}`);
        },
        register: (clientId: string, conn: ClientConnection) => {
          const socket = hub.#socketOf.get(conn);
          if (socket) admission.authenticated(socket);
          const previous = hub.#connections.get(clientId);
          hub.#connections.set(clientId, conn);
          previous?.close("taken-over");
        },
        unregister: (clientId: string, conn: ClientConnection) => {
          if (hub.#connections.get(clientId) !== conn) return;
          hub.#connections.delete(clientId);
          hub.methods.disconnected(clientId);
          if (hub.#following.delete(clientId)) upstream?.twinSync?.unfollow(clientId);
          upstream?.methodRelay?.unlisten(clientId);
          upstream?.c2dRelay?.unlisten(clientId);
        },
      };
      const api = new ServiceApi({
        hostname: config.hostname,
        serviceKey: service.key,
        registry,
        authenticator,
        peerOf: (req) => listeners.peerOf(req.socket as tls.TLSSocket),
        twins: hub.twins,
        methods: hub.methods,
        delivery: hub.delivery,
        store,
        eventsQueue: EVENTS_QUEUE,
        // `edgehub monitor` shows what devices sent: a root keeps it, an edge hub holds it for its parent.
        followedQueues: parent ? UPSTREAM_QUEUES : [EVENTS_QUEUE],
        forget: async (clientId) => {
          await hub.twins.delete(clientId);
          await sessions.clear(clientId);
          await hub.delivery.purge(clientId);
          upstream?.c2dRelay?.forget(clientId);
        },
        onStored: (listener) => {
          router.on("stored", listener);
          return () => router.off("stored", listener);
        },
        isConnected: (clientId) => hub.#connections.has(clientId),
        status: () => hub.status(),
        endpoints: () => ({ hubHostname: parent?.hubHostname ?? config.hostname, mqtts: hub.ports.mqtts }),
        // A request that passed authentication: its socket leaves its address's unauthenticated count.
        authenticated: (req) => admission.authenticated(req.socket),
        refused: (code) => hub.#observing?.metrics?.authFailed("https", code),
        moduleWrites: upstream?.parentModules,
        refreshIdentity: upstream?.scopeIdentity?.fetchFor,
        log,
      });
      for (const [srv, port] of [
        [listeners.mqtt, config.listen.mqtts],
        [listeners.https, config.listen.https],
        ...(config.listen.amqps === undefined ? [] : [[listeners.amqp, config.listen.amqps] as const]),
      ] as const) {
        await new Promise<void>((resolve, reject) => {
          srv.once("error", reject);
          srv.listen(port, config.listen.host, () => {
            listening.push(srv);
            resolve();
          });
        });
      }
      observing = await observe(
        config,
        {
          store,
          link: upstream,
          clients: () => ({ count: hub.#connections.size, ids: hub.#connections.keys() }),
          shares: () => hub.#shares?.status() ?? null,
          isBacklog: (q) => q !== EVENTS_QUEUE && q !== DEAD_LETTER_QUEUE,
          openConnections: () => hub.openConnections,
          serving: () => !hub.#closed && listening.every((l) => l.listening),
          eventLoopDelayP99Ms: () => hub.#lag.current.p99Ms,
          status: () => hub.status(),
        },
        log,
      );
      hub.#observing = observing;
      // Routed to a module input or a device: deliver it if they listen.
      router.on("stored", (queue) => hub.delivery.stored(queue));
      if (upstream) {
        router.on("stored", (queue) => {
          upstream.stored(queue);
        });
        await upstream.start();
      }
      log.log("info", "hub-started", {
        hostname: config.hostname,
        ...hub.ports,
        dataDir: config.dataDir,
      });
      return hub;
    } catch (err) {
      await observing?.close();
      for (const srv of listening) srv.close();
      await shares?.close();
      await store.close();
      throw err;
    }
  }

  /** The ports actually bound (useful with port 0); `metrics` and `amqps` are 0 when that listener is off. */
  get ports(): { mqtts: number; https: number; amqps: number; metrics: number } {
    return {
      mqtts: (this.#server.address() as AddressInfo).port,
      amqps: (this.#amqp.address() as AddressInfo | null)?.port ?? 0,
      https: (this.#https?.address() as AddressInfo | null)?.port ?? 0,
      metrics: this.#observing?.server?.port ?? 0,
    };
  }

  /**
   * The parent link and the backlog: whether the parent is reachable, when it last was, the
   * last scope sync, the forwarder's counters, the `$upstream` and `$deadletter` queues,
   * `limits` (sockets open and unauthenticated, refused past a cap, closed at a deadline),
   * `methods` (direct method calls pending, and refused past a cap), and
   * the identities' shares of the quota (`identityShares`: the share, the largest
   * identities by live bytes, messages refused; null when off), and the event loop's delay
   * over the last 5 s (`eventLoopDelayMs`); and the watching view (ts/observe/status.ts:
   * `link`, `clients`, `backlog`, `drain`, `quota`, `counters`, `deadLetters`).
   */
  async status(): Promise<Record<string, unknown>> {
    const stats = await this.store.stats();
    const watch = await this.#observing?.board.snapshot(stats);
    const queue = (name: string) => stats.queues.find((q) => q.name === name) ?? null;
    const up = this.upstream;
    return {
      role: up ? "edge" : "root",
      parent: this.config.parent
        ? { hostname: this.config.parent.hostname, type: this.config.parent.type }
        : null,
      online: up?.online ?? null,
      lastOnlineAt: up?.lastOnlineAt ? new Date(up.lastOnlineAt).toISOString() : null,
      lastScopeSyncAt: up?.scope?.lastSyncedAt ? new Date(up.scope.lastSyncedAt).toISOString() : null,
      forwarder: up ? up.stats() : null,
      upstreamQueue: queue(UPSTREAM_QUEUE),
      deadLetterQueue: queue(DEAD_LETTER_QUEUE),
      settingsVersion: this.settings.current.version ?? null,
      routes: Object.keys(this.settings.current.routes).length,
      unroutedMessages: this.#router?.unrouted ?? 0,
      identityShares: this.#shares?.status() ?? null,
      store: {
        bytes: stats.bytes,
        maxSizeBytes: stats.maxSizeBytes,
        expired: stats.expired,
        dropped: stats.dropped,
      },
      connectedClients: this.#connections.size,
      limits: this.#admission.stats(),
      methods: this.methods.stats(),
      eventLoopDelayMs: this.#lag.current,
      ...watch,
    };
  }

  /** Sockets open now (TLS and WebSocket), authenticated or not. */
  get openConnections(): number {
    return this.#sockets.size + this.#websockets.clients.size;
  }

  /** Client ids connected now. */
  get connectedClients(): string[] {
    return [...this.#connections.keys()];
  }

  /**
   * Stops cleanly: stops listening and reading from clients, waits (up to
   * {@link CLOSE_GRACE_MS}) until every message already read is stored and acknowledged,
   * closes every connection once its acknowledgements are written, and closes the store.
   * A PUBACK is only ever sent for a stored message; one whose write outlives the grace
   * period is still stored, and its client, closed without the PUBACK, sends it again.
   * Safe to call twice.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#lag.close();
    const stopped = Promise.all(
      [this.#server, this.#amqp, this.#https].map(
        (s) => new Promise<void>((resolve) => (s?.listening ? s.close(() => resolve()) : resolve())),
      ),
    );
    // Nothing new is read; what was read is stored and answered first. A connection resumes
    // reading when its answers bring it below its cap: paused again after every store call.
    const pause = () => {
      for (const s of this.#sockets) s.pause();
      for (const c of this.#connections.values()) this.#socketOf.get(c)?.pause();
    };
    pause();
    this.#router?.on("stored", pause);
    await within(CLOSE_GRACE_MS, this.#router?.settled());
    this.#router?.off("stored", pause);
    this.#https?.closeAllConnections();
    for (const ws of this.#websockets.clients) ws.terminate();
    this.methods.close();
    this.upstream?.close();
    for (const c of this.#connections.values()) c.close("hub-closing");
    // Closing ends each socket after what it has to write (its last PUBACKs): let that go out.
    await within(
      1000,
      Promise.all(
        [...this.#sockets].map((s) =>
          s.writableEnded && !s.writableFinished
            ? new Promise((resolve) => s.once("finish", resolve))
            : undefined,
        ),
      ),
    );
    for (const s of this.#sockets) s.destroy();
    await stopped;
    await this.#sharing;
    await this.#shares?.close();
    await this.store.close();
    // Last: /readyz answers 503 throughout the shutdown.
    await this.#observing?.close();
  }
}
