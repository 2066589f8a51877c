/**
 * One AMQP 1.0 connection as IoT Hub speaks it, on rhea: SASL (PLAIN with a SAS token,
 * ANONYMOUS or none, then put-token on `$cbs`), then links on IoT Hub's addresses
 * (../vocabulary.ts `ADDRESSES`) for the identities the connection authenticated. A link to
 * an address of another identity, or of none, is detached with `amqp:unauthorized-access`;
 * an unknown address with `amqp:not-found`. Input is bounded before rhea reads it (frame
 * size, one message's frames, sessions and links per connection), and a connection that
 * authenticates no identity within `connectTimeoutMs` is closed.
 *
 * Lifecycle: awaiting-auth --SASL PLAIN ok / put-token ok--> authenticated
 * --socket closed / malformed input / deadline--> closed. Identities come and go inside
 * (./client.ts).
 */
import type { Duplex } from "node:stream";
import rhea, { type Connection, type Delivery, type EventContext, type Receiver, type Sender } from "rhea";
import type { PeerCertificate, Principal } from "../auth/authenticator.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { ConnectionContext } from "../protocol/client.js";
import { ADDRESSES } from "../vocabulary.js";
import { audienceIdentity, BadCbsRequest, cbsResponse, readPutToken, tokenLogin } from "./cbs.js";
import { AmqpClient } from "./client.js";
import { FrameGuard } from "./frame-guard.js";
import { DeliveryLink } from "./links/c2d.js";
import { TelemetryLink } from "./links/telemetry.js";
import { parseSaslUsername, plainLogin, saslMechanisms } from "./sasl.js";
import { type AmqpServiceContext, type ServiceLink, ServiceSide } from "./service/session.js";

/** Largest frame either side sends; a message larger than this comes in several. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Identities one connection may hold (IoT Hub multiplexes devices on one connection). */
const MAX_CLIENTS = 16;
const MAX_SESSIONS = 8;
const MAX_LINKS = 64;
/** Messages of one connection waiting for the store: past this the socket is paused. */
const MAX_UNACKED = 128;
/** Put-token requests answered at once. */
const CBS_CREDIT = 4;
/** Twin requests and method answers in flight on one link. */
const CHANNEL_CREDIT = 16;
/** Refused put-tokens before the connection is closed. */
const MAX_REFUSED_TOKENS = 4;
/** Bytes queued to a client that does not read: past this it is disconnected. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;
/** Idle time after which rhea closes the connection (the client heartbeats at half of it). */
const IDLE_TIMEOUT_MS = 120_000;

/** rhea's server side, which its typings leave out. */
interface ServerConnection extends Connection {
  accept(socket: Duplex): Connection;
}

type Role =
  | { kind: "cbs-in" }
  | { kind: "cbs-out" }
  | { kind: "telemetry"; client: AmqpClient; link: TelemetryLink }
  | { kind: "delivery"; client: AmqpClient; link: DeliveryLink }
  | { kind: "twin-in" | "twin-out" | "methods-in" | "methods-out"; client: AmqpClient }
  | { kind: "service"; link: ServiceLink }
  | { kind: "refused" };

type LinkError = { condition: string; description: string };
type Ids = { deviceId: string; moduleId?: string | undefined };

/** `deviceId[/moduleId]`. */
function clientIdOf(ids: { deviceId: string; moduleId?: string | undefined }): string {
  return ids.moduleId === undefined ? ids.deviceId : `${ids.deviceId}/${ids.moduleId}`;
}

/** One client socket speaking AMQP. */
export class AmqpConnection {
  readonly ctx: ConnectionContext;
  readonly #socket: Duplex;
  readonly #peer: PeerCertificate | undefined;
  readonly #conn: Connection;
  readonly #clients = new Map<string, AmqpClient>();
  readonly #roles = new WeakMap<Sender | Receiver, Role>();
  #cbsOut: Sender | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #unacked = 0;
  #sessions = 0;
  #links = 0;
  #refusedTokens = 0;
  /** The service side (root hubs): C2D sends and feedback for an `iothubowner` token. */
  readonly #service: ServiceSide | undefined;
  /** The outcome of the dispositions rhea writes on its next flush, if any are waiting. */
  #flushOutcome: "accepted" | "rejected" | undefined;

  /**
   * @param peer the TLS client certificate, when the client presented one.
   * @param service the hub's service side, on a root hub.
   */
  constructor(socket: Duplex, ctx: ConnectionContext, peer?: PeerCertificate, service?: AmqpServiceContext) {
    this.ctx = ctx;
    this.#service = service && new ServiceSide(this, service, () => this.forget());
    this.#socket = socket;
    this.#peer = peer;
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

  #listen(): void {
    const c = this.#conn;
    c.on("session_open", (e: EventContext) => {
      if (++this.#sessions > MAX_SESSIONS) this.close("too-many-sessions");
      else e.session?.open();
    });
    c.on("session_close", () => this.#sessions--);
    c.on("receiver_open", (e: EventContext) => e.receiver && this.#linkOpened(e.receiver));
    c.on("sender_open", (e: EventContext) => e.sender && this.#linkOpened(e.sender));
    for (const ev of ["receiver_close", "sender_close", "receiver_error", "sender_error"])
      c.on(ev, (e: EventContext) => {
        const link = e.receiver ?? e.sender;
        if (link) this.#linkClosed(link, ev);
      });
    c.on("message", (e: EventContext) => this.#onMessage(e));
    for (const outcome of ["accepted", "rejected", "released"] as const)
      c.on(outcome, (e: EventContext) => {
        const role = e.sender && this.#roles.get(e.sender);
        if (role?.kind === "delivery" && e.delivery) role.link.settled(e.delivery, outcome);
        if (role?.kind === "service" && e.delivery) role.link.settled?.(e.delivery, outcome);
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
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.ctx.register(principal.clientId, client);
    this.ctx.log.log("info", "client-connected", { clientId: principal.clientId, protocol: "amqp" });
  }

  /** A client of this connection closed (none: the service token expired). */
  forget(client?: AmqpClient): void {
    const id = client?.principal.clientId;
    if (client && this.#clients.get(id as string) === client) this.#clients.delete(id as string);
    // With no identity left it must authenticate again in time.
    if (this.#clients.size === 0 && !this.#service?.authenticated && !this.#closed) this.#armDeadline();
  }

  #linkOpened(link: Sender | Receiver): void {
    if (++this.#links > MAX_LINKS) {
      this.close("too-many-links");
      return;
    }
    // The attach the client sent (rhea's typings leave `remote` out).
    const attach = (link as unknown as { remote: { attach?: Record<"source" | "target", unknown> } }).remote
      .attach;
    const terminus = link.is_receiver() ? attach?.target : attach?.source;
    const named: unknown = (terminus as { address?: unknown } | undefined)?.address;
    const address = typeof named === "string" ? named : undefined;
    // Our end of the link names the same address.
    if (link.is_receiver()) link.set_target({ address: address ?? "" });
    else link.set_source({ address: address ?? "" });
    const role = address === undefined ? undefined : this.#route(link, address);
    if (!role || "condition" in role) {
      const error = role ?? { condition: "amqp:not-found", description: "the link has no address" };
      this.#roles.set(link, { kind: "refused" });
      this.ctx.log.log("warn", "amqp-link-refused", { address, ...error });
      link.close(error);
      return;
    }
    this.#roles.set(link, role);
  }

  /** What the link at `address` is, or why it is refused. */
  #route(link: Sender | Receiver, address: string): Role | LinkError {
    // Some SDKs name the whole URI: the path is what counts.
    const path = address.replace(/^amqps?:\/\/[^/]*/i, "");
    const service = this.#service?.route(link, path);
    if (service) return "condition" in service ? service : { kind: "service", link: service };
    if (path === ADDRESSES.cbs || address === ADDRESSES.cbs) {
      if (link.is_receiver()) {
        (link as Receiver).add_credit(CBS_CREDIT);
        return { kind: "cbs-in" };
      }
      this.#cbsOut = link as Sender;
      return { kind: "cbs-out" };
    }
    const twin = ADDRESSES.twin.parse(path) ?? ADDRESSES.moduleTwin.parse(path);
    const methods = twin ? undefined : (ADDRESSES.methods.parse(path) ?? ADDRESSES.moduleMethods.parse(path));
    if (twin || methods) return this.#channel(link, (twin ?? methods) as Ids, twin ? "twin" : "methods");
    const events = ADDRESSES.telemetry.parse(path) ?? ADDRESSES.moduleEvents.parse(path);
    const c2d = ADDRESSES.c2d.parse(path);
    const ids = events ?? c2d;
    if (!ids) return { condition: "amqp:not-found", description: `${address} is not served here` };
    const client = this.#clients.get(clientIdOf(ids)) ?? this.#byCertificate(ids);
    const unauthorized = {
      condition: "amqp:unauthorized-access",
      description: `this connection holds no token for ${address}`,
    };
    if (!client) return unauthorized;
    if (link.is_receiver()) {
      if (!events || !this.ctx.authenticator.allows(client.principal, "telemetry", ids)) return unauthorized;
      client.adopt(link);
      return { kind: "telemetry", client, link: new TelemetryLink(this, link as Receiver, client.principal) };
    }
    // A device receives C2D on devicebound; a module its inputs on its events address.
    const kind = c2d ? "c2d" : "module-inputs";
    if ((kind === "c2d") !== (client.principal.moduleId === undefined)) return unauthorized;
    if (!this.ctx.authenticator.allows(client.principal, kind, ids)) return unauthorized;
    client.adopt(link);
    const delivery = new DeliveryLink(link as Sender);
    client.listen(delivery, kind);
    return { kind: "delivery", client, link: delivery };
  }

  /**
   * A twin or methods link: always the identity's own (as MQTT's twin and method topics),
   * so the identity must be one the connection holds. Our senders on them send settled:
   * answers, notifications and calls are at most once, as IoT Hub sends them at QoS 0.
   */
  #channel(link: Sender | Receiver, ids: Ids, channel: "twin" | "methods"): Role | LinkError {
    const client = this.#clients.get(clientIdOf(ids)) ?? this.#byCertificate(ids);
    if (!client)
      return {
        condition: "amqp:unauthorized-access",
        description: `this connection holds no token for ${clientIdOf(ids)}`,
      };
    client.adopt(link);
    if (link.is_receiver()) {
      (link as Receiver).add_credit(CHANNEL_CREDIT);
      return { kind: channel === "twin" ? "twin-in" : "methods-in", client };
    }
    (link as unknown as { local: { attach: { snd_settle_mode: number } } }).local.attach.snd_settle_mode = 1;
    if (channel === "twin") client.twin.attachSender(link as Sender);
    else client.methods.attachSender(link as Sender);
    return { kind: channel === "twin" ? "twin-out" : "methods-out", client };
  }

  /**
   * X.509 (SASL EXTERNAL, or TLS without SASL as the Node SDK does it): the first link to
   * an identity's address authenticates that identity with the client certificate.
   */
  #byCertificate(ids: Ids): AmqpClient | undefined {
    if (!this.#peer) return undefined;
    try {
      this.#admit(this.ctx.authenticator.authenticateCertificate(ids.deviceId, this.#peer, ids.moduleId));
    } catch (err) {
      this.#refused(err, clientIdOf(ids), clientIdOf(ids));
      return undefined;
    }
    return this.#clients.get(clientIdOf(ids));
  }

  #linkClosed(link: Sender | Receiver, why: string): void {
    const role = this.#roles.get(link);
    if (!role) return;
    this.#roles.delete(link);
    this.#links--;
    if (role.kind === "cbs-out" && this.#cbsOut === link) this.#cbsOut = undefined;
    if (role.kind === "delivery") role.client.unlisten(role.link, why);
    if (role.kind === "service") role.link.close(why);
    if (role.kind === "twin-out") role.client.twin.detached(link);
    if (role.kind === "methods-out") role.client.methods.detached(link);
    if (
      role.kind !== "refused" &&
      role.kind !== "cbs-in" &&
      role.kind !== "cbs-out" &&
      role.kind !== "service"
    )
      role.client.drop(link);
    if (!link.is_closed()) link.close();
  }

  #onMessage(e: EventContext): void {
    // Every request may add an answer to what the client has not read: it must read them.
    this.#checkQueued();
    const receiver = e.receiver;
    const role = receiver && this.#roles.get(receiver);
    const delivery = e.delivery;
    if (this.#closed || !role || !delivery) return;
    const message = e.message;
    if (role.kind === "telemetry") role.link.onMessage(delivery, message as never);
    else if (role.kind === "cbs-in") this.#onPutToken(receiver, delivery, message);
    else if (!message || Buffer.isBuffer(message))
      this.settle(delivery, { condition: "amqp:decode-error", description: "not an AMQP message" });
    else if (role.kind === "service") role.link.onMessage?.(delivery, message);
    else if (role.kind === "twin-in") role.client.twin.onRequest(delivery, message);
    else if (role.kind === "methods-in") role.client.methods.onResponse(delivery, message);
    if (role.kind === "twin-in" || role.kind === "methods-in") receiver.add_credit(1);
  }

  /** `$cbs` put-token: authenticates (or renews) the identity the token is for. */
  #onPutToken(receiver: Receiver, delivery: Delivery, message: EventContext["message"]): void {
    let status = 200;
    let description = "OK";
    try {
      if (!message || Buffer.isBuffer(message)) throw new BadCbsRequest("not an AMQP message");
      const request = readPutToken(message);
      try {
        if (this.#service && ServiceSide.claims(request.audience)) {
          this.#service.login(request.token);
          clearTimeout(this.#timer);
          this.#timer = undefined;
        } else this.#admit(tokenLogin(this.ctx.authenticator, request));
      } catch (err) {
        this.#refused(err, request.audience, audienceIdentity(request.audience));
        status = 401;
        description = "Unauthorized";
      }
    } catch (err) {
      status = 400;
      description = (err as Error).message;
    }
    this.settle(delivery);
    if (receiver.is_open()) receiver.add_credit(1);
    if (message && !Buffer.isBuffer(message)) this.#cbsOut?.send(cbsResponse(message, status, description));
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

  /**
   * Accepts `delivery`, or rejects it with `error` (nothing for one the client sent settled).
   * rhea writes the dispositions of one flush in ranges and merges the first two
   * deliveries of a range whatever their outcomes (`write_dispositions` in its session.js,
   * 3.0.5), so an accepted and a rejected message could both read as one of them: an outcome
   * that differs from the one waiting is held for the next flush.
   */
  settle(delivery: Delivery, error?: { condition: string; description: string }): void {
    if (delivery.remote_settled || this.#closed) return;
    const outcome = error ? "rejected" : "accepted";
    if (this.#flushOutcome !== undefined && this.#flushOutcome !== outcome) {
      setImmediate(() => this.settle(delivery, error));
      return;
    }
    if (error) delivery.reject(error);
    else delivery.accept();
    if (this.#flushOutcome === undefined) {
      this.#flushOutcome = outcome;
      // Queued after rhea's flush (the settle above asked for it), or after one already queued.
      process.nextTick(() => {
        this.#flushOutcome = undefined;
      });
    }
  }

  hold(): void {
    if (++this.#unacked === MAX_UNACKED) this.#socket.pause();
  }

  release(): void {
    if (this.#unacked-- === MAX_UNACKED && !this.#closed) this.#socket.resume();
  }

  /** Closes the connection and every identity on it (idempotent), logging why. */
  close(reason: string, fields: Record<string, unknown> = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    const clients = [...this.#clients.values()];
    for (const client of clients) client.close(reason, fields);
    const service = this.#service?.authenticated === true;
    this.#service?.close();
    if (service) this.ctx.log.log("info", "service-client-closed", { protocol: "amqp", reason, ...fields });
    else if (clients.length === 0) {
      const level = reason === "client-disconnect" || reason === "socket-closed" ? "info" : "warn";
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
    setImmediate(() => this.#socket.end());
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }
}
