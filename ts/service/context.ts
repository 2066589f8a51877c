/** What the service API's handlers work on, and one request as a handler sees it. */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Authenticator, PeerCertificate } from "../auth/authenticator.js";
import type { Device, Registry } from "../auth/registry.js";
import type { DeviceDelivery } from "../delivery/device-delivery.js";
import type { Logger } from "../log.js";
import type { DirectMethods } from "../methods/direct-methods.js";
import type { MessageStore } from "../store/index.js";
import type { Twins } from "../twin/twins.js";
import { ApiError } from "./http.js";
import type { RouteParams } from "./route-table.js";

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
  /** Drops the twin, session and queued deliveries of a deleted identity. */
  forget(clientId: string): Promise<void>;
  /** Calls back whenever new device-to-cloud messages were stored; returns an unsubscribe. */
  onStored(listener: () => void): () => void;
  isConnected(clientId: string): boolean;
  /** Where devices connect, for `GET /edge/endpoints`: the IoT hub their tokens name, the MQTT port. */
  endpoints(): { hubHostname: string; mqtts: number };
  /** The hub's link to its parent and backlog, for `GET /edge/status`. */
  status(): Promise<Record<string, unknown>>;
  /** A request on `req`'s socket passed authentication (the socket counts as authenticated). */
  authenticated?(req: IncomingMessage): void;
  log: Logger;
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
}

/** The device `id`; 404 `DeviceNotFound` when there is none. */
export function deviceOf(ctx: ServiceApiContext, id: string): Device {
  const d = ctx.registry.getDevice(id);
  if (!d) throw new ApiError(404, "DeviceNotFound", `device ${id} not found`);
  return d;
}
