/**
 * One AMQP 1.0 connection as IoT Hub speaks it, on rhea: SASL (PLAIN with a SAS token,
 * ANONYMOUS or none, EXTERNAL), put-tokens on `$cbs` (devices, modules, the service
 * policy), and the identities the connection holds; its links are ./links/router.ts's.
 * Input is bounded before rhea reads it (frame size, one message's frames, sessions per
 * connection), and a connection that authenticates nothing within `connectTimeoutMs` is closed.
 *
 * Lifecycle: awaiting-auth --SASL PLAIN ok / put-token ok--> authenticated
 * --socket closed / malformed input / deadline--> closed. Identities come and go inside
 * (./client.ts).
 */
import type { Duplex } from "node:stream";
import rhea, { type Connection, type Delivery, type EventContext, type Receiver } from "rhea";
import type { PeerCertificate, Principal } from "../auth/authenticator.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { type ConnectionContext, closedByClient, endSocket, StoreGate } from "../protocol/client.js";
import { audienceIdentity, BadCbsRequest, cbsResponse, readPutToken, tokenLogin } from "./cbs.js";
import { AmqpClient } from "./client.js";
import { DispositionGate, type Refusal } from "./dispositions.js";
import type { EventHub } from "./event-hub/event-hub.js";
import { EventHubSession } from "./event-hub/session.js";
import { FrameGuard } from "./frame-guard.js";
import { clientIdOf, LinkRouter, type RouterHost } from "./links/router.js";
import { ServiceSession, type ServiceSide } from "./links/service.js";
import { parseSaslUsername, plainLogin, saslMechanisms } from "./sasl.js";
import { batchWrites } from "./write-batch.js";

/** Largest frame either side sends; a message larger than this comes in several. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Identities one connection may hold (IoT Hub multiplexes devices on one connection). */
const MAX_CLIENTS = 16;
const MAX_SESSIONS = 8;
/** Refused put-tokens before the connection is closed. */
const MAX_REFUSED_TOKENS = 4;
/** Bytes queued to a client that does not read: past this it is disconnected. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** Bytes queued to the client past which event readers wait for the socket to drain. */
const DRAIN_BYTES = 256 * 1024;
/** Idle time after which rhea closes the connection (the client heartbeats at half of it). */
const IDLE_TIMEOUT_MS = 120_000;

/** rhea's server side, which its typings leave out. */
interface ServerConnection extends Connection {
  accept(socket: Duplex): Connection;
}

type Ids = { deviceId: string; moduleId?: string | undefined };

/** One client socket speaking AMQP. */
export class AmqpConnection implements RouterHost {
  readonly ctx: ConnectionContext;
  readonly #socket: Duplex;
  readonly #peer: PeerCertificate | undefined;
  readonly #conn: Connection;
  readonly #clients = new Map<string, AmqpClient>();
  readonly #router = new LinkRouter(this);
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #gate: StoreGate;
  #sessions = 0;
  #refusedTokens = 0;
  /** The service side, when the hub lends it; and, once a policy token was put, its links. */
  readonly serviceSide: ServiceSide | undefined;
  service: ServiceSession | undefined;
  /** The Event Hubs tokens put on this connection, once one was. */
  eventHub: EventHubSession | undefined;
  readonly #dispositions = new DispositionGate(() => this.#closed);

  /**
   * @param peer the TLS client certificate, when the client presented one.
   * @param service the service side (C2D send with an `iothubowner` token), when served.
   */
  constructor(socket: Duplex, ctx: ConnectionContext, peer?: PeerCertificate, service?: ServiceSide) {
    this.ctx = ctx;
    this.#socket = socket;
    this.#gate = new StoreGate(socket, () => this.#closed);
    this.#peer = peer;
    this.serviceSide = service;
    this.#armDeadline();
    const container = rhea.create_container({ id: "edgehub" });
    container.sasl_server_mechanisms = saslMechanisms(
      // EXTERNAL names no identity: each link's address does, checked against the certificate.
      { plain: (u, p) => this.#plain(u, p), external: () => true },
      peer !== undefined,
    );
    this.#conn = container.create_connection({
      max_frame_size: MAX_FRAME_BYTES,
      channel_max: MAX_SESSIONS - 1,
      idle_time_out: IDLE_TIMEOUT_MS,
      // Credit and dispositions are ours to give: backpressure and durable-before-accepted.
      credit_window: 0,
      autoaccept: false,
      // rhea's type asks for client transport options a server connection has no use for.
    } as unknown as Parameters<typeof container.create_connection>[0]);
    this.#listen();
    // Ahead of rhea's own reader: a frame over the bound closes the socket before rhea
    // buffers it.
    const guard = new FrameGuard(MAX_FRAME_BYTES);
    socket.on("data", (chunk: Buffer) => {
      const broken = guard.push(chunk);
      if (broken) this.close("malformed-frame", { detail: broken });
    });
    // rhea writes each frame on its own: one turn's frames leave in one write.
    batchWrites(socket);
    (this.#conn as ServerConnection).accept(socket);
    socket.on("data", () => this.#boundIncomplete());
    socket.on("close", () => this.close("socket-closed"));
  }

  get closed(): boolean {
    return this.#closed;
  }

  #armDeadline(): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.close("connect-timeout"), this.ctx.connectTimeoutMs);
  }

  /** With no identity, service token or Event Hubs token left, it must authenticate again in time. */
  #armIfIdle(): void {
    if (this.#clients.size === 0 && !this.service && !this.eventHub && !this.#closed) this.#armDeadline();
  }

  /** A login held: no deadline while it does. */
  #disarm(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #listen(): void {
    const c = this.#conn;
    c.on("session_open", (e: EventContext) => {
      if (++this.#sessions > MAX_SESSIONS) this.close("too-many-sessions");
      else e.session?.open();
    });
    c.on("session_close", () => this.#sessions--);
    c.on("receiver_open", (e: EventContext) => e.receiver && this.#router.opened(e.receiver));
    c.on("sender_open", (e: EventContext) => e.sender && this.#router.opened(e.sender));
    for (const ev of ["receiver_close", "sender_close", "receiver_error", "sender_error"])
      c.on(ev, (e: EventContext) => {
        const link = e.receiver ?? e.sender;
        if (link) this.#router.closed(link, ev);
      });
    c.on("message", (e: EventContext) => {
      // Every request may add an answer to what the client has not read: it must read them.
      this.#checkQueued();
      this.#router.message(e);
    });
    for (const outcome of ["accepted", "rejected", "released"] as const)
      c.on(outcome, (e: EventContext) => {
        if (e.sender && e.delivery) this.#router.settled(e.sender, e.delivery, outcome);
      });
    // rhea throws an 'error' nobody listens to: every failure ends here, and only this connection.
    for (const ev of ["error", "protocol_error", "connection_error", "session_error"])
      c.on(ev, (e: EventContext | Error) => {
        const err = e instanceof Error ? e : (e.connection?.error ?? e.session?.error);
        this.close(ev === "protocol_error" ? "malformed-frame" : "connection-error", {
          detail:
            err instanceof Error ? err.message : String((err as { description?: string })?.description ?? ""),
        });
      });
    c.on("connection_close", () => this.close("client-disconnect"));
    c.on("disconnected", () => this.close("socket-closed"));
  }

  /** SASL PLAIN: `{device}[/modules/{m}]@sas.{hub}` with a SAS token for that identity. */
  #plain(username: string, password: string): boolean {
    try {
      this.#admit(plainLogin(this.ctx.authenticator, username, password));
      return true;
    } catch (err) {
      const ids = parseSaslUsername(username);
      this.#refused(err, username, ids ? clientIdOf(ids) : "");
      // rhea writes the SASL outcome after this returns; the socket ends after that.
      setImmediate(() => this.close("auth-refused", { code: (err as EdgeHubError).code }));
      return false;
    }
  }

  /**
   * `who`: what the client named (a username, an audience, a link's identity); `clientId`:
   * the identity in it, when it names one ("" otherwise).
   */
  #refused(err: unknown, who: string, clientId: string): void {
    const code = (err as EdgeHubError).code;
    this.ctx.refused?.(code, clientId);
    this.ctx.log.log("warn", "amqp-auth-refused", { who, code, reason: (err as Error).message });
  }

  /** An identity authenticated on this connection (new, or a renewed token). */
  #admit(principal: Principal): void {
    const known = this.#clients.get(principal.clientId);
    if (known) {
      known.renew(principal);
      return;
    }
    if (this.#clients.size >= MAX_CLIENTS)
      throw new EdgeHubError(
        ErrorCodes.AUTH_NOT_IN_SCOPE,
        `more than ${MAX_CLIENTS} identities on one connection`,
      );
    const client = new AmqpClient(this, principal);
    this.#clients.set(principal.clientId, client);
    this.#disarm();
    this.ctx.register(principal.clientId, client);
    this.ctx.log.log("info", "client-connected", { clientId: principal.clientId, protocol: "amqp" });
  }

  /** A client of this connection closed. */
  forget(client: AmqpClient): void {
    const id = client.principal.clientId;
    if (this.#clients.get(id) === client) this.#clients.delete(id);
    this.#armIfIdle();
  }

  /** A service policy token put: the service links live until it expires (a new one moves that). */
  #admitService(side: ServiceSide, expiresAt: number): void {
    this.service ??= new ServiceSession(() => {
      this.service = undefined;
      this.#armIfIdle();
    });
    this.service.renew(expiresAt);
    this.#disarm();
    side.authenticated();
  }

  /** An Event Hubs token put for `audience` (its links live while a token covers them). */
  #admitEventHub(side: ServiceSide, hub: EventHub, audience: string, token: string): void {
    const expiresAt = hub.verifyToken(token, audience);
    this.eventHub ??= new EventHubSession(() => {
      this.eventHub = undefined;
      this.#armIfIdle();
    });
    if (!this.eventHub.put(audience, expiresAt))
      throw new EdgeHubError(ErrorCodes.AUTH_NOT_IN_SCOPE, "too many Event Hubs audiences on one connection");
    this.#disarm();
    side.authenticated();
  }

  /** Resolves once the bytes queued to the client are under {@link DRAIN_BYTES} (or it closed). */
  drained(): Promise<void> {
    const socket = this.#socket;
    if (this.#closed || socket.writableLength <= DRAIN_BYTES) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        socket.off("drain", done);
        socket.off("close", done);
        resolve();
      };
      socket.on("drain", done);
      socket.on("close", done);
    });
  }

  /**
   * The identity `ids` names, if the connection holds it; with X.509 (SASL EXTERNAL, or TLS
   * without SASL as the Node SDK does it) the first link to an identity's address
   * authenticates that identity with the client certificate.
   */
  clientFor(ids: Ids): AmqpClient | undefined {
    const held = this.#clients.get(clientIdOf(ids));
    if (held || !this.#peer) return held;
    try {
      this.#admit(this.ctx.authenticator.authenticateCertificate(ids.deviceId, this.#peer, ids.moduleId));
    } catch (err) {
      this.#refused(err, clientIdOf(ids), clientIdOf(ids));
      return undefined;
    }
    return this.#clients.get(clientIdOf(ids));
  }

  /** `$cbs` put-token: authenticates (or renews) the identity the token is for. */
  onPutToken(receiver: Receiver, delivery: Delivery, message: EventContext["message"]): void {
    let status = 200;
    let description = "OK";
    try {
      if (!message || Buffer.isBuffer(message)) throw new BadCbsRequest("not an AMQP message");
      const request = readPutToken(message);
      const named = audienceIdentity(request.audience);
      const eventHub = this.serviceSide?.eventHub;
      try {
        // Under the event hub's name: an Event Hubs client's token for one of its links.
        if (named === "" && this.serviceSide && eventHub?.names(request.audience))
          this.#admitEventHub(this.serviceSide, eventHub, request.audience, request.token);
        // The hub's own name: a service policy token (what azure-iothub puts).
        else if (named === "" && this.serviceSide)
          this.#admitService(this.serviceSide, this.serviceSide.verifyToken(request.token));
        else this.#admit(tokenLogin(this.ctx.authenticator, request));
      } catch (err) {
        this.#refused(err, request.audience, named);
        status = 401;
        description = "Unauthorized";
      }
    } catch (err) {
      status = 400;
      description = (err as Error).message;
    }
    this.settle(delivery);
    if (receiver.is_open()) receiver.add_credit(1);
    if (message && !Buffer.isBuffer(message))
      this.#router.cbsOut?.send(cbsResponse(message, status, description));
    if (status !== 200 && ++this.#refusedTokens >= MAX_REFUSED_TOKENS) this.close("too-many-refused-tokens");
  }

  /**
   * One message's frames are gathered by rhea until the last: past a message's bound
   * (the body limit and its properties) the connection is closed.
   */
  #boundIncomplete(): void {
    if (this.#closed) return;
    const max = this.ctx.maxMessageBytes + MAX_FRAME_BYTES;
    this.#conn.each_receiver(
      (r: Receiver) => {
        const frames = (r as Receiver & { _incomplete?: { frames?: Buffer[] } })._incomplete?.frames;
        if (frames && frames.reduce((n, f) => n + f.length, 0) > max) this.close("message-too-large");
      },
      () => true,
    );
  }

  #checkQueued(): void {
    if (this.#socket.writableLength > MAX_QUEUED_BYTES) this.close("client-not-reading");
  }

  /** Accepts `delivery`, or rejects it with `error`, kept apart by outcome (./dispositions.ts). */
  settle(delivery: Delivery, error?: Refusal): void {
    this.#dispositions.settle(delivery, error);
  }

  hold(): void {
    this.#gate.hold();
  }

  release(): void {
    this.#gate.release();
  }

  /** Closes the connection and every identity on it (idempotent), logging why. */
  close(reason: string, fields: Record<string, unknown> = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    const service = this.service !== undefined || this.eventHub !== undefined;
    this.service?.close();
    this.eventHub?.close();
    const clients = [...this.#clients.values()];
    for (const client of clients) client.close(reason, fields);
    if (service) this.ctx.log.log("info", "service-client-closed", { protocol: "amqp", reason, ...fields });
    else if (clients.length === 0) {
      const level = closedByClient(reason) ? "info" : "warn";
      if (this.ctx.closedUnauthenticated)
        this.ctx.closedUnauthenticated(level, reason, { protocol: "amqp", ...fields });
      else this.ctx.log.log(level, "client-closed", { protocol: "amqp", reason, ...fields });
    }
    try {
      if (!this.#conn.is_closed()) this.#conn.close();
    } catch {
      // The socket may be gone already.
    }
    // rhea writes the close frame on the next tick; the socket ends after it (SDKs wait for it).
    setImmediate(() => endSocket(this.#socket));
  }
}
