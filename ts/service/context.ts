/** What the service API's handlers work on, and one request as a handler sees it. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type net from "node:net";
import type tls from "node:tls";
import type { Authenticator, PeerCertificate } from "../auth/authenticator.js";
import type { Device, Registry } from "../auth/registry.js";
import type { DeviceDelivery } from "../delivery/device-delivery.js";
import type { ErrorCode } from "../errors.js";
import type { Logger } from "../log.js";
import type { DirectMethods } from "../methods/direct-methods.js";
import type { MessageStore } from "../store/index.js";
import type { Twins } from "../twin/twins.js";
import { EVENTS_QUEUE } from "../vocabulary.js";
import type { EventStreams } from "./events.js";
import { ApiError } from "./http.js";
import type { ModuleWrites } from "./module-identity.js";
import type { RouteParams } from "./route-table.js";
import type { IdentityRefresh } from "./scope-identity.js";

/** What the API works on. */
export interface ServiceApiContext {
  hostname: string;
  serviceKey: string;
  registry: Registry;
  /** Checks the edge tokens of the scope sync call. */
  authenticator: Authenticator;
  /** The TLS client certificate of a request, when one was presented. */
  peerOf(req: IncomingMessage): PeerCertificate | undefined;
  twins: Twins;
  methods: DirectMethods;
  delivery: DeviceDelivery;
  store: MessageStore;
  eventsQueue: string;
  /** What `GET /messages/events/stream` follows: the events queue on a root, the upstream queues on an edge hub. */
  followedQueues: readonly string[];
  /** Drops the twin, session and queued deliveries of a deleted identity. */
  forget(clientId: string): Promise<void>;
  /** Calls back whenever new device-to-cloud messages were stored; returns an unsubscribe. */
  onStored(listener: () => void): () => void;
  isConnected(clientId: string): boolean;
  /**
   * Where clients connect, for `GET /edge/endpoints`: the IoT hub device tokens name, the MQTT
   * and AMQP ports (0: off), and on a root the Event Hubs–compatible endpoint.
   */
  endpoints(): { hubHostname: string; mqtts: number; amqps: number; eventHub: EventHubEndpoint | null };
  /** The hub's link to its parent and backlog, for `GET /edge/status`. */
  status(): Promise<Record<string, unknown>>;
  /** A request on `req`'s socket passed authentication (the socket counts as authenticated). */
  authenticated?(req: IncomingMessage): void;
  /** A request was refused with 401 or 403; `code` is the `AUTH_*` code (for the metrics). */
  refused?(code: ErrorCode): void;
  /** On an edge hub: a device's module identity writes go to the parent. */
  moduleWrites?: ModuleWrites | undefined;
  /** On an edge hub: a child edge's ask for one identity its cache lacks goes to the parent. */
  refreshIdentity?: IdentityRefresh | undefined;
  log: Logger;
}

/** The Event Hubs–compatible endpoint as `GET /edge/endpoints` names it (ts/amqp/event-hub). */
export interface EventHubEndpoint {
  /** The event hub's name (`EntityPath`). */
  name: string;
  /** Every consumer group, `$Default` first. */
  consumerGroups: string[];
  /** `Endpoint=sb://{hostname}/;SharedAccessKeyName=iothubowner;SharedAccessKey=…;EntityPath={name}`. */
  connectionString: string;
}

/** One request as a route's handler sees it. */
export interface Call {
  ctx: ServiceApiContext;
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The path's segments, decoded. */
  parts: string[];
  params: RouteParams;
  /** Who calls: the service (`SERVICE_CALLER`), or `{device}/{module}` for a module invoking a method. */
  caller: string;
  /** The open `edgehub monitor` streams (bounded). */
  streams: EventStreams;
}

/** The device `id`; 404 `DeviceNotFound` when there is none. */
export function deviceOf(ctx: ServiceApiContext, id: string): Device {
  const d = ctx.registry.getDevice(id);
  if (!d) throw new ApiError(404, "DeviceNotFound", `device ${id} not found`);
  return d;
}

/** The hub's parts the service API is made of. */
export interface ServiceParts
  extends Pick<
    ServiceApiContext,
    | "hostname"
    | "serviceKey"
    | "registry"
    | "authenticator"
    | "twins"
    | "methods"
    | "delivery"
    | "store"
    | "status"
    | "moduleWrites"
    | "refreshIdentity"
    | "refused"
    | "followedQueues"
    | "log"
  > {
  /** The IoT hub device tokens name (the root's, through gateways), for `GET /edge/endpoints`. */
  hubHostname: string;
  mqttsPort(): number;
  amqpsPort(): number;
  /** A root's Event Hubs–compatible endpoint. */
  eventHub(): EventHubEndpoint | null;
  /** The client certificate a TLS socket presented. */
  peerOf(socket: tls.TLSSocket): PeerCertificate | undefined;
  /** A socket passed authentication (it leaves its address's unauthenticated count). */
  authenticated(socket: net.Socket): void;
  sessions: { clear(clientId: string): Promise<void> };
  router: { on(event: "stored", l: () => void): unknown; off(event: "stored", l: () => void): unknown };
  clients: { has(clientId: string): boolean };
  /** C2D from the parent (absent on a root, or towards a broker). */
  c2dRelay(): { forget(clientId: string): void } | undefined;
}

/** The service API's context over the hub's parts. */
export function serviceContext(p: ServiceParts): ServiceApiContext {
  const { twins, delivery } = p;
  return {
    hostname: p.hostname,
    serviceKey: p.serviceKey,
    registry: p.registry,
    authenticator: p.authenticator,
    twins,
    methods: p.methods,
    delivery,
    store: p.store,
    status: () => p.status(),
    moduleWrites: p.moduleWrites,
    refreshIdentity: p.refreshIdentity,
    log: p.log,
    eventsQueue: EVENTS_QUEUE,
    followedQueues: p.followedQueues,
    refused: p.refused,
    peerOf: (req) => p.peerOf(req.socket as tls.TLSSocket),
    // A deleted identity: nothing of it may reach one later created with the same id.
    forget: async (clientId) => {
      await twins.delete(clientId);
      await p.sessions.clear(clientId);
      await delivery.purge(clientId);
      p.c2dRelay()?.forget(clientId);
    },
    onStored: (listener) => {
      p.router.on("stored", listener);
      return () => p.router.off("stored", listener);
    },
    isConnected: (clientId) => p.clients.has(clientId),
    endpoints: () => ({
      hubHostname: p.hubHostname,
      mqtts: p.mqttsPort(),
      amqps: p.amqpsPort(),
      eventHub: p.eventHub(),
    }),
    authenticated: (req) => p.authenticated(req.socket),
  };
}
