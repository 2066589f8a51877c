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
import type { PeerCertificate, Principal } from "../auth/authenticator.js";
import type { Outgoing, Settled } from "../delivery/device-delivery.js";
import type { EdgeHubError } from "../errors.js";
import type { TwinProperties } from "../twin/twins.js";
import {
  type ClientConnection,
  type ConnectionContext,
  closedByClient,
  endSocket,
  StoreGate,
} from "./client.js";
import { PacketReader } from "./packet-reader.js";
import { SessionWriter } from "./sessions.js";
import { deliveryTopic, parsePublishTopic, parseSubscribeTopic, type SubscribeTopic } from "./topics.js";
import { answerTwinRequest } from "./twin-requests.js";

export type { ConnectionContext } from "./client.js";

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
/** Largest packet before CONNECT is accepted: a CONNECT with its token. */
const MAX_CONNECT_BYTES = 16 * 1024;
/** Packets held while a session is restored. */
const MAX_HELD = 256;
/** Bytes queued to a client that does not read: past this it is disconnected. */
const MAX_QUEUED_BYTES = 4 * 1024 * 1024;

/** One client socket. */
export class MqttConnection implements ClientConnection {
  readonly #socket: Duplex;
  readonly #ctx: ConnectionContext;
  readonly #reader: PacketReader;
  #principal: Principal | undefined;
  #closed = false;
  #timer: NodeJS.Timeout;
  #keepaliveMs = 0;
  /** Packet ids to PUBACK, written together once the current batch of completions is done. */
  #acks: number[] = [];
  readonly #subscribed = new Set<SubscribeTopic["kind"]>();
  /** QoS 1 publishes to the client awaiting PUBACK, by packet id. */
  readonly #inflight = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  #nextPacketId = 0;
  /** Packets that arrived while the session was being restored, replayed after CONNACK. */
  #held: Packet[] | undefined;
  #cleanSession = true;
  /** The stored subscriptions of a clean=false client, set once its session is restored. */
  #session: SessionWriter | undefined;
  readonly #gate: StoreGate;
  #expiry: NodeJS.Timeout | undefined;

  readonly #peer: PeerCertificate | undefined;

  /** @param peer the TLS client certificate, when the client presented one. */
  constructor(socket: Duplex, ctx: ConnectionContext, peer?: PeerCertificate) {
    this.#socket = socket;
    this.#gate = new StoreGate(socket, () => this.#closed);
    this.#ctx = ctx;
    this.#peer = peer;
    this.#timer = setTimeout(() => this.close("connect-timeout"), ctx.connectTimeoutMs);
    this.#reader = new PacketReader(
      MAX_CONNECT_BYTES,
      (p) => this.#onPacket(p),
      ({ reason, ...fields }) => this.close(reason, fields),
    );
    socket.on("data", (chunk: Buffer) => this.#reader.push(chunk));
    socket.on("error", (err: Error) => this.close("socket-error", { detail: err.message }));
    socket.on("close", () => this.close("socket-closed"));
  }

  /** The authenticated identity, once connected. */
  get principal(): Principal | undefined {
    return this.#principal;
  }

  #send(packet: Packet): void {
    this.#write(mqtt.generate(packet as Parameters<typeof mqtt.generate>[0]));
  }

  #write(bytes: Buffer): void {
    if (this.#closed) return;
    this.#socket.write(bytes);
    if (this.#socket.writableLength > MAX_QUEUED_BYTES) this.close("client-not-reading");
  }

  /**
   * PUBACK, the hottest write. A store batch completes many of one client's messages at
   * once; their PUBACKs go out as one write (one TLS record), not one each.
   */
  #puback(messageId: number): void {
    if (this.#acks.push(messageId) === 1) queueMicrotask(() => this.#flushAcks());
  }

  #flushAcks(): void {
    const ids = this.#acks;
    // Already sent by close(), which flushes what its turn had queued.
    if (ids.length === 0) return;
    this.#acks = [];
    const out = Buffer.allocUnsafe(ids.length * 4);
    ids.forEach((id, i) => {
      out[i * 4] = 0x40;
      out[i * 4 + 1] = 0x02;
      out.writeUInt16BE(id, i * 4 + 2);
    });
    this.#write(out);
  }

  #touch(): void {
    if (this.#keepaliveMs === 0 || this.#closed) return;
    this.#timer.refresh();
  }

  #onPacket(p: Packet): void {
    if (this.#closed) return;
    if (this.#held) {
      if (this.#held.push(p) > MAX_HELD) this.close("too-many-packets-before-connack");
      return;
    }
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
        for (const topic of p.unsubscriptions) {
          const t = parseSubscribeTopic(topic);
          if (t && this.#subscribed.delete(t.kind)) this.#ctx.unsubscribed?.(this, t.kind);
        }
        // MQTT 3.1.1's UNSUBACK has no per-topic codes (mqtt-packet's type is v5's).
        this.#afterSessionSaved(() => this.#send({ cmd: "unsuback", messageId: p.messageId } as Packet));
        return;
      case "pingreq":
        this.#send({ cmd: "pingresp" });
        return;
      case "puback":
        this.#inflight.get(p.messageId ?? -1)?.resolve();
        this.#inflight.delete(p.messageId ?? -1);
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
    // mqtt-packet decodes strings leniently: invalid UTF-8 shows up as U+FFFD.
    if ([p.clientId, p.username ?? ""].some((v) => v.includes("\ufffd"))) {
      this.#send({ cmd: "connack", returnCode: CONNACK.badIdentifier, sessionPresent: false });
      this.close("bad-utf8", { field: "client id or username" });
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
        peer: this.#peer,
      });
    } catch (err) {
      const code = (err as EdgeHubError).code;
      this.#ctx.refused?.(code, p.clientId);
      // One answer for every refusal (as IoT Hub: 5), so a caller cannot tell an unknown id
      // from a bad token; the reason goes to the log with its code.
      this.#send({ cmd: "connack", returnCode: CONNACK.notAuthorized, sessionPresent: false });
      this.close("auth-refused", { clientId: p.clientId, code, detail: (err as Error).message });
      return;
    }
    this.#keepaliveMs = (p.keepalive ?? 0) * 1500;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.close("keepalive-timeout"), this.#keepaliveMs || 2 ** 31 - 1);
    if (this.#keepaliveMs === 0) this.#timer.unref();
    const expiresAt = this.#principal.expiresAt;
    if (expiresAt !== undefined) {
      // As IoT Hub: a connection lives no longer than its token; SDKs renew and reconnect.
      this.#expiry = setTimeout(
        () => this.close("token-expired"),
        Math.min(expiresAt - Date.now(), 2 ** 31 - 1),
      );
      this.#expiry.unref();
    }
    this.#reader.maxPacketBytes = this.#ctx.maxMessageBytes + PACKET_OVERHEAD;
    this.#ctx.register(p.clientId, this);
    this.#cleanSession = p.clean !== false;
    this.#held = [];
    const clientId = p.clientId;
    const restore = this.#cleanSession
      ? this.#ctx.sessions.clear(clientId).then(() => undefined)
      : this.#ctx.sessions.load(clientId);
    restore.then(
      (kinds) => {
        if (this.#closed) return;
        for (const k of kinds ?? []) this.#subscribed.add(k);
        if (!this.#cleanSession) this.#session = new SessionWriter(this.#ctx.sessions, clientId, kinds);
        this.#send({ cmd: "connack", returnCode: CONNACK.accepted, sessionPresent: kinds !== undefined });
        const held = this.#held ?? [];
        this.#held = undefined;
        for (const k of this.#subscribed) this.#ctx.subscribed(this, k);
        for (const packet of held) this.#onPacket(packet);
      },
      (err: unknown) => this.close("session-restore-failed", { detail: (err as Error).message }),
    );
    this.#ctx.log.log("info", "client-connected", { clientId: p.clientId });
  }

  #onPublish(p: IPublishPacket): void {
    const principal = this.#principal as Principal;
    if (p.qos === 2) {
      this.close("qos2-refused", { topic: p.topic });
      return;
    }
    const t = p.topic.includes("\ufffd") ? undefined : parsePublishTopic(p.topic);
    if (t?.kind === "twin-get" || t?.kind === "twin-reported") {
      this.#onTwinRequest(t.kind, t.rid, p);
      return;
    }
    if (t?.kind === "method-response") {
      if (p.qos === 1) this.#puback(p.messageId ?? 0);
      this.#ctx.methods.respond(principal.clientId, t.rid, t.status, Buffer.from(p.payload));
      return;
    }
    if (t?.kind !== "telemetry") {
      this.close("topic-refused", { topic: p.topic });
      return;
    }
    if (!this.#ctx.authenticator.allows(principal, "telemetry", t)) {
      this.close("topic-not-own", { topic: p.topic });
      return;
    }
    const body = typeof p.payload === "string" ? Buffer.from(p.payload) : p.payload;
    if (body.length > this.#ctx.maxMessageBytes) {
      this.close("message-too-large", { bytes: body.length });
      return;
    }
    const ack = p.qos === 1 ? p.messageId : undefined;
    const telemetry = {
      deviceId: principal.deviceId,
      body,
      properties: t.properties,
      forwarded: principal.via !== undefined,
    };
    // Backpressure: a client faster than the disk waits in its socket, not in our memory.
    this.#gate.hold();
    this.#ctx.router.accept(
      principal.moduleId === undefined ? telemetry : { ...telemetry, moduleId: principal.moduleId },
      (err) => {
        if (err) {
          // MQTT 3.1.1 has no negative PUBACK: the client learns by the disconnect and
          // retries its unacknowledged message later.
          this.close("store-refused", { code: (err as EdgeHubError).code, detail: (err as Error).message });
          return;
        }
        this.#gate.release();
        if (ack !== undefined) this.#puback(ack);
      },
    );
  }

  /** Twin GET and reported PATCH: answered on `$iothub/twin/res/{status}/?$rid=…`. */
  #onTwinRequest(kind: "twin-get" | "twin-reported", rid: string, p: IPublishPacket): void {
    this.#gate.hold();
    const clientId = (this.#principal as Principal).clientId;
    const fresh =
      kind === "twin-get" && this.#ctx.refreshTwin ? this.#ctx.refreshTwin(clientId) : Promise.resolve();
    void fresh
      .then(() => answerTwinRequest(this.#ctx.twins, this.#ctx.log, clientId, kind, Buffer.from(p.payload)))
      .then((a) => {
        this.#gate.release();
        if (p.qos === 1) this.#puback(p.messageId ?? 0);
        if (!this.#subscribed.has("twin-responses")) return;
        const v = a.version === undefined ? "" : `&$version=${a.version}`;
        this.deliver(
          `$iothub/twin/res/${a.status}/?$rid=${encodeURIComponent(rid)}${v}`,
          Buffer.from(a.body),
        );
      });
  }

  /** True once the client subscribed to direct methods. */
  listensForMethods(): boolean {
    return this.#subscribed.has("methods");
  }

  callMethod(name: string, rid: string, payload: Buffer): void {
    this.deliver(`$iothub/methods/POST/${encodeURIComponent(name)}/?$rid=${rid}`, payload);
  }

  /** True once a device subscribed to its C2D messages, or a module to its inputs. */
  listensForDeliveries(): boolean {
    return this.#subscribed.has(this.#principal?.moduleId === undefined ? "c2d" : "module-inputs");
  }

  /** A C2D message or module input at QoS 1 on its topic: the PUBACK completes it. */
  deliverMessage(m: Outgoing, dup: boolean): Promise<Settled> {
    return this.deliverQos1(deliveryTopic(m), m.body, dup).then(() => "completed");
  }

  /** Publishes at QoS 1 (`dup`: sent before); resolves on the client's PUBACK, rejects if the connection closes first. */
  deliverQos1(topic: string, payload: Buffer, dup = false): Promise<void> {
    if (this.#closed) return Promise.reject(new Error("connection closed"));
    do this.#nextPacketId = (this.#nextPacketId % 65535) + 1;
    while (this.#inflight.has(this.#nextPacketId));
    const messageId = this.#nextPacketId;
    return new Promise((resolve, reject) => {
      this.#inflight.set(messageId, { resolve, reject });
      this.#send({ cmd: "publish", topic, payload, qos: 1, messageId, retain: false, dup } as Packet);
    });
  }

  /** Publishes to the client at QoS 0 (how IoT Hub sends method requests, twin responses and patches). */
  deliver(topic: string, payload: Buffer): void {
    this.#send({ cmd: "publish", topic, payload, qos: 0, retain: false, dup: false } as Packet);
  }

  /** Pushes a desired-properties patch if the client subscribed to them. */
  desiredChanged(patch: TwinProperties): void {
    if (!this.#subscribed.has("twin-desired")) return;
    this.deliver(
      `$iothub/twin/PATCH/properties/desired/?$version=${patch.$version}`,
      Buffer.from(JSON.stringify(patch)),
    );
  }

  #onSubscribe(p: ISubscribePacket): void {
    const principal = this.#principal as Principal;
    const granted = p.subscriptions.map((s) => {
      const t = parseSubscribeTopic(s.topic);
      // Twin and method topics name no identity: they are always the client's own.
      const own =
        t &&
        (t.kind === "c2d" || t.kind === "module-inputs"
          ? this.#ctx.authenticator.allows(principal, t.kind, t)
          : true);
      if (!t || !own) {
        this.#ctx.log.log("warn", "subscribe-refused", { clientId: principal.clientId, topic: s.topic });
        return 0x80;
      }
      this.#subscribed.add(t.kind);
      return t.kind === "c2d" || t.kind === "module-inputs" ? 1 : 0;
    });
    this.#afterSessionSaved(() => {
      this.#send({ cmd: "suback", messageId: p.messageId, granted });
      for (const kind of this.#subscribed) this.#ctx.subscribed(this, kind);
    });
  }

  /**
   * Runs `ack` (SUBACK, UNSUBACK) once the subscriptions of a clean=false client are
   * stored, so an acknowledged subscription survives a crash. At most one write per client
   * in flight and one queued (however many SUBSCRIBEs arrive meanwhile), none when the
   * set is unchanged (SDKs subscribe again after every reconnect); waiting acks count
   * toward the client's backpressure like unacknowledged messages.
   */
  #afterSessionSaved(ack: () => void): void {
    const saved = this.#session?.save(this.#subscribed);
    if (!saved) {
      ack();
      return;
    }
    this.#gate.hold();
    saved.then(
      () => {
        this.#gate.release();
        if (!this.#closed) ack();
      },
      (err: unknown) => this.close("session-save-failed", { detail: (err as Error).message }),
    );
  }

  /**
   * Closes the connection (idempotent), logging `reason` (a fixed word) with `fields`; what an error said
   * goes in `fields.detail`, never `fields.reason`, which would replace the word in the log.
   */
  close(reason: string, fields: Record<string, unknown> = {}): void {
    if (this.#closed) return;
    // PUBACKs of stored messages still waiting for this turn's flush go out first: the
    // client need not send those messages again.
    this.#flushAcks();
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#expiry);
    const clientId = this.#principal?.clientId;
    if (clientId) this.#ctx.unregister(clientId, this);
    for (const f of this.#inflight.values()) f.reject(new Error(`connection closed: ${reason}`));
    this.#inflight.clear();
    const level = closedByClient(reason) ? "info" : "warn";
    if (this.#principal === undefined && this.#ctx.closedUnauthenticated)
      this.#ctx.closedUnauthenticated(level, reason, fields);
    else this.#ctx.log.log(level, "client-closed", { clientId, reason, ...fields });
    endSocket(this.#socket);
  }
}
