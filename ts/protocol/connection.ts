/**
 * One MQTT 3.1.1 connection as IoT Hub speaks it: CONNECT with SAS, telemetry PUBLISH at
 * QoS 0/1 acknowledged only once durable, PINGREQ, DISCONNECT. Anything outside the
 * client's own topics is refused and logged, never delivered.
 *
 * Lifecycle: awaiting-connect --CONNECT ok--> connected --DISCONNECT/error/timeout--> closed.
 */
import type { Duplex } from "node:stream";
import mqtt, {
  type IConnectPacket,
  type IPublishPacket,
  type ISubscribePacket,
  type Packet,
} from "mqtt-packet";
import type { Authenticator, Principal } from "../auth/authenticator.js";
import { type EdgeHubError, ErrorCodes } from "../errors.js";
import type { Logger } from "../log.js";
import type { Router } from "../routing/router.js";
import { parsePublishTopic, parseSubscribeTopic } from "./topics.js";

/** What a connection needs from the hub. */
export interface ConnectionContext {
  authenticator: Authenticator;
  router: Router;
  log: Logger;
  /** Called once authenticated; returns false if the client id was taken over meanwhile. */
  register(clientId: string, conn: MqttConnection): void;
  unregister(clientId: string, conn: MqttConnection): void;
  /** Largest message body accepted (IoT Hub: 256 KB). */
  maxMessageBytes: number;
  /** How long a socket may stay open without CONNECT. */
  connectTimeoutMs: number;
}

/** CONNACK return codes of MQTT 3.1.1. */
const CONNACK = {
  accepted: 0,
  badProtocol: 1,
  badIdentifier: 2,
  badCredentials: 4,
  notAuthorized: 5,
} as const;
/** Fixed header and topic allowance on top of the body limit. */
const PACKET_OVERHEAD = 64 * 1024;

/** One client socket. */
export class MqttConnection {
  readonly #socket: Duplex;
  readonly #ctx: ConnectionContext;
  readonly #parser = mqtt.parser({ protocolVersion: 4 });
  #principal: Principal | undefined;
  #closed = false;
  #timer: NodeJS.Timeout;
  #keepaliveMs = 0;
  #buffered = 0;

  constructor(socket: Duplex, ctx: ConnectionContext) {
    this.#socket = socket;
    this.#ctx = ctx;
    this.#timer = setTimeout(() => this.close("connect-timeout"), ctx.connectTimeoutMs);
    this.#parser.on("packet", (p: Packet) => this.#onPacket(p));
    this.#parser.on("error", (err: Error) => this.close("malformed-packet", { reason: err.message }));
    socket.on("data", (chunk: Buffer) => {
      // mqtt-packet buffers a packet until it is whole: bound what one packet may take.
      this.#buffered += chunk.length;
      if (this.#buffered > ctx.maxMessageBytes + PACKET_OVERHEAD) {
        this.close("packet-too-large", { bytes: this.#buffered });
        return;
      }
      this.#parser.parse(chunk);
    });
    socket.on("error", (err: Error) => this.close("socket-error", { reason: err.message }));
    socket.on("close", () => this.close("socket-closed"));
  }

  /** The authenticated identity, once connected. */
  get principal(): Principal | undefined {
    return this.#principal;
  }

  #send(packet: Packet): void {
    if (!this.#closed) this.#socket.write(mqtt.generate(packet as Parameters<typeof mqtt.generate>[0]));
  }

  #touch(): void {
    if (this.#keepaliveMs === 0 || this.#closed) return;
    this.#timer.refresh();
  }

  #onPacket(p: Packet): void {
    this.#buffered = 0;
    if (this.#closed) return;
    if (!this.#principal) {
      if (p.cmd !== "connect") {
        this.close("packet-before-connect", { cmd: p.cmd });
        return;
      }
      this.#onConnect(p);
      return;
    }
    this.#touch();
    switch (p.cmd) {
      case "publish":
        this.#onPublish(p);
        return;
      case "subscribe":
        this.#onSubscribe(p);
        return;
      case "unsubscribe":
        // MQTT 3.1.1's UNSUBACK has no per-topic codes (mqtt-packet's type is v5's).
        this.#send({ cmd: "unsuback", messageId: p.messageId } as Packet);
        return;
      case "pingreq":
        this.#send({ cmd: "pingresp" });
        return;
      case "puback":
        return;
      case "disconnect":
        this.close("client-disconnect");
        return;
      default:
        this.close("unexpected-packet", { cmd: p.cmd });
        return;
    }
  }

  #onConnect(p: IConnectPacket): void {
    if (p.protocolId !== "MQTT" || p.protocolVersion !== 4) {
      this.#send({ cmd: "connack", returnCode: CONNACK.badProtocol, sessionPresent: false });
      this.close("bad-protocol", { version: p.protocolVersion });
      return;
    }
    if (!p.clientId) {
      this.#send({ cmd: "connack", returnCode: CONNACK.badIdentifier, sessionPresent: false });
      this.close("no-client-id");
      return;
    }
    try {
      this.#principal = this.#ctx.authenticator.authenticate({
        clientId: p.clientId,
        username: p.username,
        password: p.password,
      });
    } catch (err) {
      const code = (err as EdgeHubError).code;
      const returnCode = code === ErrorCodes.AUTH_BAD_TOKEN ? CONNACK.badCredentials : CONNACK.notAuthorized;
      this.#send({ cmd: "connack", returnCode, sessionPresent: false });
      this.close("auth-refused", { clientId: p.clientId, code, reason: (err as Error).message });
      return;
    }
    this.#keepaliveMs = (p.keepalive ?? 0) * 1500;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.close("keepalive-timeout"), this.#keepaliveMs || 2 ** 31 - 1);
    if (this.#keepaliveMs === 0) this.#timer.unref();
    this.#ctx.register(p.clientId, this);
    this.#send({ cmd: "connack", returnCode: CONNACK.accepted, sessionPresent: false });
    this.#ctx.log.log("info", "client-connected", { clientId: p.clientId });
  }

  #onPublish(p: IPublishPacket): void {
    const principal = this.#principal as Principal;
    if (p.qos === 2) {
      this.close("qos2-refused", { topic: p.topic });
      return;
    }
    const t = parsePublishTopic(p.topic);
    if (t?.kind !== "telemetry") {
      this.close("topic-refused", { topic: p.topic });
      return;
    }
    if (t.deviceId !== principal.deviceId || t.moduleId !== principal.moduleId) {
      this.close("topic-not-own", { topic: p.topic });
      return;
    }
    const body = typeof p.payload === "string" ? Buffer.from(p.payload) : p.payload;
    if (body.length > this.#ctx.maxMessageBytes) {
      this.close("message-too-large", { bytes: body.length });
      return;
    }
    const ack = p.qos === 1 ? p.messageId : undefined;
    const telemetry = { deviceId: principal.deviceId, body, properties: t.properties };
    this.#ctx.router
      .accept(principal.moduleId === undefined ? telemetry : { ...telemetry, moduleId: principal.moduleId })
      .then(
        () => {
          if (ack !== undefined) this.#send({ cmd: "puback", messageId: ack });
        },
        (err: unknown) => {
          // MQTT 3.1.1 has no negative PUBACK: the client learns by the disconnect and
          // retries its unacknowledged message later.
          this.close("store-refused", { code: (err as EdgeHubError).code, reason: (err as Error).message });
        },
      );
  }

  #onSubscribe(p: ISubscribePacket): void {
    const principal = this.#principal as Principal;
    const granted = p.subscriptions.map((s) => {
      const t = parseSubscribeTopic(s.topic);
      const own =
        t &&
        (t.kind === "c2d"
          ? t.deviceId === principal.deviceId && principal.moduleId === undefined
          : t.kind === "module-inputs"
            ? t.deviceId === principal.deviceId && t.moduleId === principal.moduleId
            : true);
      if (!own)
        this.#ctx.log.log("warn", "subscribe-refused", { clientId: principal.clientId, topic: s.topic });
      // Deliveries to subscribers (C2D, twins, methods) are not served yet: refuse rather
      // than accept a subscription that would never deliver.
      return 0x80;
    });
    this.#send({ cmd: "suback", messageId: p.messageId, granted });
  }

  /** Closes the connection (idempotent), logging why. */
  close(reason: string, fields: Record<string, unknown> = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    const clientId = this.#principal?.clientId;
    if (clientId) this.#ctx.unregister(clientId, this);
    const level = reason === "client-disconnect" || reason === "socket-closed" ? "info" : "warn";
    this.#ctx.log.log(level, "client-closed", { clientId, reason, ...fields });
    this.#socket.end();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }
}
