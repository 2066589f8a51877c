/**
 * What the hub needs of a client connection, whatever its protocol: the MQTT head
 * (./connection.ts) and the AMQP head (../amqp/) are peers under one context. The hub keeps
 * one connection per client id, delivers C2D messages, module inputs, method calls and
 * desired-property patches through it, and closes it (taken over, identity revoked).
 */
import type { Duplex } from "node:stream";
import type { Authenticator, Principal } from "../auth/authenticator.js";
import type { DeliveryTarget } from "../delivery/device-delivery.js";
import type { Logger, LogLevel } from "../log.js";
import type { DirectMethods, MethodTarget } from "../methods/direct-methods.js";
import type { Router } from "../routing/router.js";
import type { TwinProperties, Twins } from "../twin/twins.js";
import type { Sessions } from "./sessions.js";
import type { SubscribeTopic } from "./topics.js";

/** What a client listens for (an MQTT subscription, an AMQP receiving link). */
export type ListenKind = SubscribeTopic["kind"];

/** Requests of one connection waiting for the store: past this its socket is paused. */
export const MAX_WAITING_FOR_STORE = 128;

/**
 * A connection's backpressure on the store, the same under both heads: a client faster than
 * the disk waits in its socket (paused past {@link MAX_WAITING_FOR_STORE} requests waiting),
 * not in the hub's memory, and reads again once answers bring it back under.
 */
export class StoreGate {
  #waiting = 0;
  readonly #socket: Duplex;
  readonly #closed: () => boolean;

  constructor(socket: Duplex, closed: () => boolean) {
    this.#socket = socket;
    this.#closed = closed;
  }

  /** A request goes to the store. */
  hold(): void {
    if (++this.#waiting === MAX_WAITING_FOR_STORE) this.#socket.pause();
  }

  /** A request held by {@link StoreGate.hold} is answered. */
  release(): void {
    if (this.#waiting-- === MAX_WAITING_FOR_STORE && !this.#closed()) this.#socket.resume();
  }
}

/** How long a closing connection's socket may take to write what it has left. */
const CLOSE_WRITE_MS = 1000;

/**
 * Ends a connection's socket after what it has to write (its last answers), then destroys
 * it. Meanwhile it reads, and drops, what the client still sends: a socket closed with
 * unread bytes answers with RST, and the client's kernel then drops what it had not read
 * yet, the last PUBACKs among it (a clean stop pauses reading with publishes in flight).
 */
export function endSocket(socket: Duplex): void {
  socket.end();
  socket.resume();
  setTimeout(() => socket.destroy(), CLOSE_WRITE_MS).unref();
}

/** A close the client made (or its socket just went): logged at info, and nothing to tell it. */
export function closedByClient(reason: string): boolean {
  return reason === "client-disconnect" || reason === "socket-closed";
}

/** One authenticated client (device or module) on a connection of any protocol. */
export interface ClientConnection extends DeliveryTarget, MethodTarget {
  /** The authenticated identity. */
  readonly principal: Principal | undefined;
  /** Pushes a desired-properties patch if the client listens for them. */
  desiredChanged(patch: TwinProperties): void;
  /** Ends this client's part of the connection (idempotent), logging why. */
  close(reason: string, fields?: Record<string, unknown>): void;
}

/** What a connection needs from the hub. */
export interface ConnectionContext {
  authenticator: Authenticator;
  router: Router;
  twins: Twins;
  /** On an edge hub while its parent is reachable: refreshes a twin from the parent before a GET is answered. */
  refreshTwin?(clientId: string): Promise<void>;
  methods: DirectMethods;
  sessions: Sessions;
  /** Called after a subscription is granted (the hub starts deliveries). */
  subscribed(conn: ClientConnection, kind: ListenKind): void;
  /** Called when the client drops a subscription it held (the hub stops following for it upstream). */
  unsubscribed?(conn: ClientConnection, kind: ListenKind): void;
  log: Logger;
  /** Called when a login is refused, with the reason's code and the client id it named. */
  refused?(code: string, clientId: string): void;
  /** Called once authenticated: the hub closes an older connection of the same client id. */
  register(clientId: string, conn: ClientConnection): void;
  unregister(clientId: string, conn: ClientConnection): void;
  /** Largest message body accepted (IoT Hub: 256 KB). */
  maxMessageBytes: number;
  /** How long a socket may stay open without authenticating (MQTT CONNECT, AMQP SASL or put-token). */
  connectTimeoutMs: number;
  /**
   * Told instead of the log when a connection that never authenticated closes: anyone can
   * cause that, so the hub counts and rate-limits it.
   */
  closedUnauthenticated?(level: LogLevel, reason: string, fields: Record<string, unknown>): void;
}
