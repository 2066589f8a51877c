/**
 * The AMQP head as the hub wires it: one function per accepted stream (a TLS socket, or a
 * WebSocket over one) that runs an {@link AmqpConnection} under the hub's shared context,
 * with the service side (azure-iothub's C2D send, checked and queued as the service API
 * does, and on a root the C2D feedback and the Event Hubs–compatible endpoint).
 */
import type net from "node:net";
import type { Duplex } from "node:stream";
import type { PeerCertificate } from "../auth/authenticator.js";
import type { Registry } from "../auth/registry.js";
import type { DeviceDelivery } from "../delivery/device-delivery.js";
import type { ClientConnection, ConnectionContext } from "../protocol/client.js";
import {
  type C2dSend,
  type ServicePolicy,
  sendServiceC2D,
  verifyServiceToken,
} from "../service/service-side.js";
import { AmqpConnection } from "./connection.js";
import type { EventHub } from "./event-hub/event-hub.js";
import type { FeedbackQueue } from "./links/feedback.js";

/** What the hub lends the AMQP head. */
export interface AmqpHeadDeps {
  /** The hub's context for client connections (with AMQP's own refusal counter). */
  context: ConnectionContext;
  /** Notes the socket a client came in on (its admission slot is released at login). */
  cameIn(client: ClientConnection, socket: net.Socket): void;
  /** Counts a socket as authenticated (a service login, which registers no client). */
  authenticated(socket: net.Socket): void;
  /** The service policy, where a service's C2D messages go, and their feedback (a root's). */
  service: {
    policy: ServicePolicy;
    registry: Registry;
    delivery: DeviceDelivery;
    feedback: FeedbackQueue | undefined;
    /** The Event Hubs–compatible endpoint (a root's). */
    eventHub: EventHub | undefined;
  };
}

/** Runs an AMQP connection on `stream`, which came in on `socket`. */
export function amqpHead(
  deps: AmqpHeadDeps,
): (stream: Duplex, socket: net.Socket, peer?: PeerCertificate) => void {
  const { context, service } = deps;
  return (stream, socket, peer) => {
    const register = (clientId: string, client: ClientConnection) => {
      deps.cameIn(client, socket);
      context.register(clientId, client);
    };
    const serviceSide = {
      verifyToken: (token: string) => verifyServiceToken(service.policy, token),
      sendC2D: (deviceId: string, m: C2dSend) =>
        sendServiceC2D(service.registry, service.delivery, deviceId, m),
      authenticated: () => deps.authenticated(socket),
      feedback: service.feedback,
      eventHub: service.eventHub,
    };
    new AmqpConnection(stream, { ...context, register }, peer, serviceSide);
  };
}
