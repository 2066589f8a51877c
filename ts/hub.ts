/**
 * The composition root: {@link EdgeHub.start} connects the parts, each of which holds its
 * own policy (listeners and clients in ts/protocol, the router and quota shares in
 * ts/routing, the parent in ts/upstream, the service API in ts/service, watching in
 * ts/observe). Any choice made from config is visible here.
 */
import { join } from "node:path";
import { EventHub } from "./amqp/event-hub/event-hub.js";
import { lazyAmqpHead } from "./amqp/lazy-head.js";
import { FeedbackQueue } from "./amqp/links/feedback.js";
import { Authenticator } from "./auth/authenticator.js";
import { Registry } from "./auth/registry.js";
import { SecretBox } from "./auth/secret-box.js";
import { serverTls } from "./certs/server-tls.js";
import { type HubConfig, type HubConfigInput, loadConfig } from "./config/config.js";
import { ensurePrivateDataDir } from "./config/data-dir.js";
import { DeviceDelivery } from "./delivery/device-delivery.js";
import { EventLoopLag } from "./event-loop-lag.js";
import { consoleLogger, type Logger } from "./log.js";
import { DirectMethods } from "./methods/direct-methods.js";
import { hubStatus } from "./observe/hub-status.js";
import { type Observing, observe } from "./observe/observe.js";
import { Admission, RateLimitedLog } from "./protocol/admission.js";
import { connectionContext } from "./protocol/client-context.js";
import { Clients } from "./protocol/clients.js";
import { MqttConnection } from "./protocol/connection.js";
import { createListeners, type Listeners, listen, serving, stopListening } from "./protocol/listeners.js";
import { Sessions } from "./protocol/sessions.js";
import { HubRouting } from "./routing/hub-routing.js";
import { ServiceApi } from "./service/api.js";
import { serviceContext } from "./service/context.js";
import { serviceCredential } from "./service/credential.js";
import { MessageStore } from "./store/index.js";
import { Twins } from "./twin/twins.js";
import { EdgeHubSettings } from "./upstream/settings.js";
import { Upstream } from "./upstream/upstream.js";
import { EVENTS_QUEUE, UPSTREAM_QUEUES } from "./vocabulary.js";

/** How long {@link EdgeHub.close} waits for messages being stored to be stored and acknowledged. */
export const CLOSE_GRACE_MS = 5000;

/** What a hub is made of, once connected. */
type Parts = Pick<
  EdgeHub,
  "config" | "store" | "registry" | "twins" | "methods" | "delivery" | "settings" | "upstream"
> & {
  routing: HubRouting;
  clients: Clients;
  admission: Admission;
  listeners: Listeners;
  tls: { ca: string; caFile: string };
  service: { connectionString: string; file: string };
  /** A root's C2D feedback. */
  feedback: FeedbackQueue | undefined;
  eventHub: EventHub | undefined;
};

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
  /**
   * On a root hub, what an Event Hubs consumer (`@azure/event-hubs`) reads the devices'
   * telemetry with: `Endpoint=sb://{hostname}/;SharedAccessKeyName=iothubowner;SharedAccessKey=…;EntityPath={eventHub.name}`,
   * served on the AMQP listener (`listen.amqps`; a client dials it with `customEndpointAddress`).
   * Undefined on an edge hub (its telemetry is its parent's).
   */
  readonly eventHubConnectionString: string | undefined;
  /** Routes and store limits in force: config, overridden by the parent's `$edgeHub` desired properties. */
  readonly settings: EdgeHubSettings;
  /** The link to the parent and the forwarder; absent on a root hub. */
  readonly upstream: Upstream | undefined;
  readonly #routing: HubRouting;
  readonly #clients: Clients;
  /** Connection caps and deadline counters of every listener. */
  readonly #admission: Admission;
  readonly #listeners: Listeners;
  readonly #lag = new EventLoopLag();
  /** Status board, metrics and the operators' listener. */
  #observing: Observing | undefined;
  readonly #feedback: FeedbackQueue | undefined;
  #closed = false;

  private constructor(p: Parts) {
    this.config = p.config;
    this.store = p.store;
    this.registry = p.registry;
    this.twins = p.twins;
    this.methods = p.methods;
    this.delivery = p.delivery;
    this.settings = p.settings;
    this.upstream = p.upstream;
    this.#routing = p.routing;
    this.#clients = p.clients;
    this.#admission = p.admission;
    this.#listeners = p.listeners;
    this.#feedback = p.feedback;
    this.caCertificate = p.tls.ca;
    this.caFile = p.tls.caFile;
    this.serviceConnectionString = p.service.connectionString;
    this.serviceConnectionStringFile = p.service.file;
    this.eventHubConnectionString = p.eventHub?.connectionString();
  }

  /** Starts a hub: opens its store and registry, and listens for MQTT over TLS and HTTPS. */
  static async start(
    input: HubConfigInput = {},
    log: Logger = consoleLogger(input.logLevel),
  ): Promise<EdgeHub> {
    const config = loadConfig(input);
    await ensurePrivateDataDir(config.dataDir, log);
    const tls = await serverTls(config);
    const store = await MessageStore.open(join(config.dataDir, "store"), {
      defaultTtlSecs: config.timeToLiveSecs,
      maxSizeBytes: config.maxSizeBytes,
      whenFull: config.whenFull,
      durability: config.durability,
    });
    let routing: HubRouting | undefined;
    let listeners: Listeners | undefined;
    let observing: Observing | undefined;
    let watching: FeedbackQueue | undefined;
    try {
      const box = await SecretBox.fromKeyFile(join(config.dataDir, "secrets.key"));
      const registry = await Registry.open(store, box, { allowNesting: config.allowNesting });
      const service = await serviceCredential(store, box, config);
      const parent = config.parent;
      // Tokens name the hub clients think they talk to: this one, or (through a gateway) its parent.
      const hostnames = parent ? [config.hostname, parent.hostname, parent.hubHostname] : [config.hostname];
      const authenticator = new Authenticator(registry, hostnames);
      // Settings cached from the parent apply before the first client is let in.
      const settings = new EdgeHubSettings(store, config, log);
      await settings.loadCached();
      const role = { edgeDeviceId: parent?.deviceId, eventsRetentionSecs: config.eventsRetentionSecs };
      routing = await HubRouting.open(store, settings, role, log);
      const router = routing.router;
      const upstream = parent
        ? new Upstream(parent, store, registry, settings, log, { box, dataDir: config.dataDir })
        : undefined;
      const clients = new Clients();
      const twins = new Twins(store);
      const methods = new DirectMethods((clientId) => clients.get(clientId), config.limits);
      const delivery = new DeviceDelivery(store, (clientId) => clients.get(clientId), log);
      upstream?.attach(twins, methods, delivery);
      registry.on("revoked", (deviceId, moduleId) => clients.revoke(deviceId, moduleId));
      twins.on("desired", (clientId, patch) => clients.get(clientId)?.desiredChanged(patch));
      // Reported patches feed `/twinChangeNotifications` routes.
      twins.on("reported", (clientId, patch, version) =>
        router.twinChanged(clientId, patch, version, (err) => {
          if (err) log.log("warn", "twin-change-not-routed", { clientId, reason: (err as Error).message });
        }),
      );
      // Refusals and timeouts can be caused by anyone: their log lines are rate-limited.
      const quietLog = new RateLimitedLog(log);
      const admission = new Admission(config.limits, quietLog);
      const sessions = new Sessions(store);
      // The parts every connection and the service API work with.
      const common = { config, store, registry, authenticator, router, twins, methods, delivery, sessions };
      const shared = { ...common, clients, admission, upstream, quietLog, log };
      const context = connectionContext({
        ...shared,
        connectTimeoutMs: config.limits.mqttConnectTimeoutMs,
        refused: (code) => hub.#observing?.metrics?.authFailed("mqtt", code),
      });
      // A root serves its events queue to Event Hubs consumers too (docs/amqp.md).
      const eventHub = parent
        ? undefined
        : new EventHub({
            ...config.eventHub,
            hostname: config.hostname,
            key: service.key,
            authenticator,
            queue: EVENTS_QUEUE,
            feed: {
              store,
              onStored: (listener) => {
                router.on("stored", listener);
                return () => router.off("stored", listener);
              },
            },
          });
      const api = new ServiceApi(
        serviceContext({
          ...shared,
          hostname: config.hostname,
          serviceKey: service.key,
          hubHostname: parent?.hubHostname ?? config.hostname,
          mqttsPort: () => hub.ports.mqtts,
          amqpsPort: () => hub.ports.amqps,
          eventHub: () =>
            eventHub
              ? {
                  name: eventHub.name,
                  consumerGroups: eventHub.consumerGroups,
                  connectionString: eventHub.connectionString(),
                }
              : null,
          peerOf: (socket) => hub.#listeners.peerOf(socket),
          authenticated: (socket) => admission.authenticated(socket),
          c2dRelay: () => upstream?.c2dRelay,
          moduleWrites: upstream?.parentModules,
          refreshIdentity: upstream?.scopeIdentity?.fetchFor,
          refused: (code) => hub.#observing?.metrics?.authFailed("https", code),
          // `edgehub monitor` shows what devices sent: a root keeps it, an edge hub holds it for its parent.
          followedQueues: parent ? UPSTREAM_QUEUES : [EVENTS_QUEUE],
          status: () => hub.status(),
        }),
      );
      // A root gives C2D feedback as IoT Hub does (an edge's C2D comes from its parent's hub).
      const feedback = parent ? undefined : new FeedbackQueue(store, registry, log);
      if (feedback) {
        delivery.onSettled = (clientId, m, outcome, queue) => feedback.settled(clientId, m, outcome, queue);
        delivery.onC2dQueued = (deviceId, queue, offset, properties, ttlSecs) =>
          feedback.queued(deviceId, queue, offset, properties, ttlSecs);
        delivery.onC2dRemoved = (deviceId, why) => feedback.removed(deviceId, why);
        watching = feedback;
        await feedback.start();
      }
      // The AMQP head: the same parts, its refusals counted apart (docs/amqp.md); loaded
      // with the first AMQP connection.
      const amqp = lazyAmqpHead(
        {
          context: connectionContext({
            ...shared,
            connectTimeoutMs: config.limits.mqttConnectTimeoutMs,
            refused: (code) => hub.#observing?.metrics?.authFailed("amqp", code),
          }),
          cameIn: (client, socket) => clients.cameIn(client, socket),
          authenticated: (socket) => admission.authenticated(socket),
          service: {
            policy: { hostname: config.hostname, key: service.key, authenticator },
            registry,
            delivery,
            feedback,
            eventHub,
          },
        },
        (err) => log.log("error", "amqp-head-not-loaded", { reason: err.message }),
      );
      listeners = createListeners(tls, config.limits, admission, quietLog, {
        mqtt: (socket, peer) => clients.acceptTls(socket, () => new MqttConnection(socket, context, peer)),
        amqp: (socket, peer) => {
          clients.acceptAmqp(socket);
          amqp(socket, socket, peer);
        },
        webSocket: (stream, socket, peer) =>
          clients.acceptWebSocket(new MqttConnection(stream, context, peer), socket),
        amqpWebSocket: (stream, socket, peer) => amqp(stream, socket, peer),
        request: (req, res) => api.handle(req, res),
      });
      const hub = new EdgeHub({ ...shared, settings, routing, listeners, tls, service, feedback, eventHub });
      await listen(listeners, config.listen);
      observing = await observe(
        config,
        {
          store,
          link: upstream,
          openConnections: () => hub.openConnections,
          status: () => hub.status(),
          clients: () => ({ count: clients.size, ids: clients.ids() }),
          shares: () => hub.#routing.shares?.status() ?? null,
          serving: () => !hub.#closed && serving(hub.#listeners),
          eventLoopDelayP99Ms: () => hub.#lag.current.p99Ms,
        },
        log,
      );
      hub.#observing = observing;
      // Stored for a module input or a device: delivered if they listen; for the parent: forwarded.
      router.on("stored", (queue) => delivery.stored(queue));
      if (upstream) {
        router.on("stored", (queue) => upstream.stored(queue));
        await upstream.start();
      }
      log.log("info", "hub-started", { hostname: config.hostname, ...hub.ports, dataDir: config.dataDir });
      return hub;
    } catch (err) {
      watching?.close();
      await observing?.close();
      if (listeners) void stopListening(listeners);
      await routing?.close();
      await store.close();
      throw err;
    }
  }

  /** The ports actually bound (useful with port 0); `amqps` and `metrics` are 0 when that listener is off. */
  get ports(): { mqtts: number; https: number; amqps: number; metrics: number } {
    const port = (s: { address(): unknown }) => (s.address() as { port: number } | null)?.port ?? 0;
    return {
      mqtts: port(this.#listeners.mqtt),
      amqps: port(this.#listeners.amqp),
      https: port(this.#listeners.https),
      metrics: this.#observing?.server?.port ?? 0,
    };
  }

  /** The parent link, the backlog, limits and the watching view: `GET /edge/status` (ts/observe/hub-status.ts). */
  async status(): Promise<Record<string, unknown>> {
    return hubStatus({
      store: this.store,
      parent: this.config.parent,
      upstream: this.upstream,
      settings: this.settings.current,
      unroutedMessages: this.#routing.router.unrouted,
      identityShares: this.#routing.shares?.status() ?? null,
      connectedClients: this.#clients.size,
      limits: this.#admission.stats(),
      methods: this.methods.stats(),
      eventLoopDelayMs: this.#lag.current,
      board: this.#observing?.board,
    });
  }

  /** Sockets open now (TLS and WebSocket), authenticated or not. */
  get openConnections(): number {
    return this.#clients.tlsSockets + this.#listeners.websockets.size;
  }

  /** Client ids connected now. */
  get connectedClients(): string[] {
    return [...this.#clients.ids()];
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
    const stopped = stopListening(this.#listeners);
    await this.#clients.quiesce(this.#routing.router, CLOSE_GRACE_MS);
    this.#listeners.https.closeAllConnections();
    this.#listeners.websockets.terminateAll();
    this.methods.close();
    this.upstream?.close();
    this.#feedback?.close();
    // Closing ends each socket after what it has to write (its last PUBACKs): let that go out.
    await this.#clients.closeAll("hub-closing", 1000);
    await stopped;
    await this.#routing.close();
    await this.store.close();
    // Last: /readyz answers 503 throughout the shutdown.
    await this.#observing?.close();
  }
}
