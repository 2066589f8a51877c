/**
 * A lean MQTT client for the links to the parent: one TLS connection, QoS 1 publishes
 * answered by callback on their PUBACK, QoS 0 or 1 subscriptions, inbound QoS 1 PUBACKed
 * at once or, for the topics the owner defers (cloud-to-device), when it says so and in
 * arrival order, keepalive. Nothing else:
 * no reconnect (the link decides), no offline queue (the store is the queue), no
 * outgoing store (the forwarder keeps what is unacknowledged).
 *
 * Why not MQTT.js, which the links first used: forwarding a backlog through it cost about
 * 30 µs of CPU per message on the edge and grew the heap past 100 MB while draining
 * (`benches/drain.bench.mjs`); this client writes one buffer per publish, batches the
 * writes of one event-loop turn into one TLS record, and keeps a callback per packet id.
 * Packets are framed and decoded by the same {@link PacketReader} as the protocol head.
 *
 * States: connecting --CONNACK 0--> connected --close/error/keepalive--> closed.
 */
import { EventEmitter } from "node:events";
import tls from "node:tls";
import mqtt, { type Packet } from "mqtt-packet";
import { PacketReader } from "../protocol/packet-reader.js";

/** How to reach and log in to the parent. */
export interface ClientOptions {
  host: string;
  port: number;
  clientId: string;
  username?: string;
  password?: string;
  protocolVersion?: 4 | 5;
  keepaliveSecs: number;
  connectTimeoutMs?: number;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  /**
   * MQTT clean session (default true). False keeps the parent's session across connections,
   * so what it did not get a PUBACK for is redelivered (IoT Hub keeps undelivered C2D).
   */
  clean?: boolean;
  /**
   * Inbound QoS 1 PUBLISHes on these topics are PUBACKed only when the owner completes them
   * ({@link Inbound.complete}); others at once.
   */
  deferAcks?: (topic: string) => boolean;
}

/**
 * A deferred inbound QoS 1 PUBLISH. Its PUBACK leaves when it and every QoS 1 PUBLISH that
 * arrived before it on the connection are complete: MQTT-4.6.0-2 wants PUBACKs in arrival
 * order, and the C# device SDK throws on an out-of-order complete (`MqttIotHubAdapter.cs#Acknowledge`).
 */
export interface Inbound {
  /** The parent set DUP: it may have sent this PUBLISH before. */
  readonly dup: boolean;
  /** Done with it: PUBACK in order. Safe to call twice and after the connection ended (then nothing is sent). */
  complete(): void;
}

/** The parent answered a publish with a refusal of that message (MQTT 5 reason code): sending it again will not help. */
export class MessageRefused extends Error {}

/**
 * The connection ended before the PUBACK. `byParent`: the parent ended it (closed or reset
 * the socket, sent DISCONNECT), not a timeout of ours; a parent that does so every time one
 * message is sent refuses that message.
 */
export class ConnectionLost extends Error {
  readonly byParent: boolean;
  constructor(reason: string, byParent: boolean) {
    super(reason);
    this.byParent = byParent;
  }
}

/**
 * True for a CONNACK that means "later", not "never": 3 "server unavailable" (MQTT 3.1.1;
 * transient for the C# device SDK, `MqttIotHubAdapter.cs#ProcessConnectAckAsync`), and
 * MQTT 5's 0x88 server unavailable, 0x89 server busy, 0x97 quota exceeded.
 */
export function busyRefusal(code: number): boolean {
  return code === 3 || code === 0x88 || code === 0x89 || code === 0x97;
}

/** Called with null on PUBACK, or the reason the connection ended first. */
export type Acked = (err: Error | null) => void;

/**
 * Packet ids 1 to 0x7FFF (32,767), shared by every packet awaiting an answer: the C# device
 * SDK's range (Azure/azure-iot-sdk-csharp:iothub/device/src/Transport/Mqtt/MqttIotHubAdapter.cs#ComposePublishPacketAsync
 * wraps at 0x7FFF), so a parent sees the ids Microsoft's edge hub sends; `parent.window`
 * is capped at half of them (ts/config/config.ts `MAX_WINDOW`).
 */
const PACKET_IDS = 0x7fff;

/** Largest packet accepted from the parent (twin documents, method requests). */
const MAX_INCOMING = 1024 * 1024;

/**
 * Inbound QoS 1 PUBLISHes not yet PUBACKed: a parent sending more without waiting is
 * dropped (IoT Hub has at most 50 C2D messages in flight per device; our root 64).
 */
const MAX_UNACKED_INBOUND = 1024;

/**
 * An MQTT 3.1.1 QoS 1 PUBLISH in one buffer: the packet a link writes per forwarded
 * message, built without the general packet generator.
 */
export function publishPacket(topic: string, messageId: number, payload: Buffer): Buffer {
  const topicBytes = Buffer.byteLength(topic);
  const remaining = 2 + topicBytes + 2 + payload.length;
  let lenBytes = 1;
  for (let n = remaining; n >= 0x80; n = Math.floor(n / 128)) lenBytes++;
  const out = Buffer.allocUnsafe(1 + lenBytes + remaining);
  out[0] = 0x32;
  let at = 1;
  let n = remaining;
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  out.writeUInt16BE(topicBytes, at);
  at += 2;
  at += out.write(topic, at);
  out.writeUInt16BE(messageId, at);
  payload.copy(out, at + 2);
  return out;
}

/**
 * One connection. Emits `connect` (session present), `refused` (CONNACK code), `message`
 * (topic, payload, and for a deferred QoS 1 PUBLISH its {@link Inbound}), `close` (reason).
 */
export class MqttClient extends EventEmitter<{
  connect: [sessionPresent: boolean];
  refused: [code: number];
  message: [topic: string, payload: Buffer, inbound?: Inbound];
  close: [reason: string];
}> {
  readonly #socket: tls.TLSSocket;
  readonly #version: 4 | 5;
  readonly #inflight = new Map<number, Acked>();
  readonly #subacks = new Map<number, (err: Error | null) => void>();
  #nextId = 0;
  /** MQTT 5: the largest packet the parent takes (its CONNACK's Maximum Packet Size). */
  #maxPacket = Number.POSITIVE_INFINITY;
  #connected = false;
  #reached = false;
  #closed = false;
  #corked = false;
  #lastWrite = Date.now();
  #lastRead = Date.now();
  readonly #timer: NodeJS.Timeout;
  readonly #deferAcks: ((topic: string) => boolean) | undefined;
  /** Inbound QoS 1 packet ids in arrival order, each with whether it is complete; PUBACKed from the front. */
  #unacked: Array<{ messageId: number; done: boolean }> = [];

  constructor(o: ClientOptions) {
    super();
    this.#version = o.protocolVersion ?? 4;
    this.#deferAcks = o.deferAcks;
    const reader = new PacketReader(
      MAX_INCOMING,
      (p) => this.#onPacket(p),
      (f) => this.destroy(`from the parent: ${f.reason}`),
      this.#version,
    );
    this.#socket = tls.connect({
      host: o.host,
      port: o.port,
      servername: o.servername ?? o.host,
      ...(o.ca ? { ca: o.ca } : {}),
      ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}),
      rejectUnauthorized: true,
      minVersion: "TLSv1.2",
    });
    this.#socket.setNoDelay(true);
    this.#socket.once("connect", () => {
      this.#reached = true;
    });
    this.#socket.on("secureConnect", () => {
      this.#send(
        mqtt.generate(
          {
            cmd: "connect",
            protocolId: "MQTT",
            protocolVersion: this.#version,
            clean: o.clean ?? true,
            clientId: o.clientId,
            keepalive: o.keepaliveSecs,
            ...(o.username === undefined ? {} : { username: o.username }),
            ...(o.password === undefined ? {} : { password: Buffer.from(o.password) }),
          },
          { protocolVersion: this.#version },
        ),
      );
    });
    this.#socket.on("data", (chunk: Buffer) => {
      this.#lastRead = Date.now();
      reader.push(chunk);
    });
    this.#socket.on("error", (err: Error) => this.destroy(err.message, true));
    this.#socket.on("close", () => this.destroy("connection closed", true));
    const connectBy = Date.now() + (o.connectTimeoutMs ?? 10_000);
    const keepaliveMs = o.keepaliveSecs * 1000;
    // One timer for both: the connect deadline, then keepalive (PINGREQ when idle, and
    // the connection taken as dead after 1.5 keepalives of silence).
    this.#timer = setInterval(
      () => {
        const now = Date.now();
        if (!this.#connected) {
          if (now > connectBy) this.destroy("no CONNACK in time");
          return;
        }
        if (now - this.#lastRead > keepaliveMs * 1.5) this.destroy("keepalive timeout");
        else if (now - this.#lastWrite >= keepaliveMs / 2) this.#send(mqtt.generate({ cmd: "pingreq" }));
      },
      Math.max(100, Math.min(1000, keepaliveMs / 4)),
    );
    this.#timer.unref();
  }

  /** Publishes at QoS 1; `done` is called on its PUBACK or when the connection ends first. */
  publish(topic: string, payload: Buffer, done: Acked, userProperties?: Record<string, string>): void {
    if (this.#closed || !this.#connected) {
      done(new Error("not connected"));
      return;
    }
    const messageId = this.#id();
    if (messageId === undefined) {
      done(new Error(`all ${PACKET_IDS} packet ids are awaiting an answer`));
      return;
    }
    this.#inflight.set(messageId, done);
    if (this.#version === 4) {
      this.#send(publishPacket(topic, messageId, payload));
      return;
    }
    const packet = {
      cmd: "publish" as const,
      topic,
      payload,
      qos: 1 as const,
      messageId,
      retain: false,
      dup: false,
      ...(userProperties ? { properties: { userProperties } } : {}),
    };
    const bytes = mqtt.generate(packet, { protocolVersion: this.#version });
    if (bytes.length > this.#maxPacket) {
      // The parent said it takes no packet this large: it would drop the connection, every time.
      this.#inflight.delete(messageId);
      done(
        new MessageRefused(
          `the message is ${bytes.length} bytes on the wire, over the parent's maximum packet size of ${this.#maxPacket}`,
        ),
      );
      return;
    }
    this.#send(bytes);
  }

  /** Subscribes each filter at its QoS; `done` on the SUBACK (an error if any filter was refused). */
  subscribe(filters: Array<{ topic: string; qos: 0 | 1 }>, done: (err: Error | null) => void): void {
    this.#request(done, (messageId) => ({ cmd: "subscribe", messageId, subscriptions: filters }));
  }

  /** Unsubscribes; `done` on the UNSUBACK. */
  unsubscribe(topics: string[], done: (err: Error | null) => void): void {
    this.#request(done, (messageId) => ({ cmd: "unsubscribe", messageId, unsubscriptions: topics }));
  }

  /**
   * Sends a SUBSCRIBE or UNSUBSCRIBE under a fresh packet id; `done` on its answer. Both
   * answers are matched in one map: one packet id space, one answer each.
   */
  #request(
    done: (err: Error | null) => void,
    packet: (messageId: number) => mqtt.ISubscribePacket | mqtt.IUnsubscribePacket,
  ): void {
    if (this.#closed || !this.#connected) {
      done(new Error("not connected"));
      return;
    }
    const messageId = this.#id();
    if (messageId === undefined) {
      done(new Error(`all ${PACKET_IDS} packet ids are awaiting an answer`));
      return;
    }
    this.#subacks.set(messageId, done);
    this.#send(mqtt.generate(packet(messageId), { protocolVersion: this.#version }));
  }

  /** True between the accepted CONNACK and the end of the connection. */
  /**
   * True once the TCP connection was established: false after a close means the parent's
   * port did not answer (refused, unreachable, timed out) rather than a TLS or MQTT refusal.
   */
  get reached(): boolean {
    return this.#reached;
  }

  get connected(): boolean {
    return this.#connected && !this.#closed;
  }

  /**
   * Ends the connection (idempotent); everything unacknowledged is failed with a
   * {@link ConnectionLost} for `reason` (`byParent`: the parent ended it).
   */
  destroy(reason: string, byParent = false): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#socket.destroy();
    const err = new ConnectionLost(reason, byParent);
    for (const done of this.#inflight.values()) done(err);
    this.#inflight.clear();
    for (const done of this.#subacks.values()) done(err);
    this.#subacks.clear();
    // Not PUBACKed: the parent sends them again (clean session false) or drops them with the session.
    this.#unacked = [];
    this.emit("close", reason);
  }

  /** PUBACKs the complete prefix of the inbound QoS 1 PUBLISHes, in arrival order. */
  #flushAcks(): void {
    let n = 0;
    while (n < this.#unacked.length && (this.#unacked[n] as { done: boolean }).done) n++;
    if (n === 0) return;
    const acked = this.#unacked.splice(0, n);
    if (this.#closed) return;
    for (const { messageId } of acked)
      this.#send(mqtt.generate({ cmd: "puback", messageId }, { protocolVersion: this.#version }));
  }

  /** A packet id no publish or subscribe awaiting an answer holds (they share one space); undefined when all are held. */
  #id(): number | undefined {
    if (this.#inflight.size + this.#subacks.size >= PACKET_IDS) return undefined;
    do this.#nextId = (this.#nextId % PACKET_IDS) + 1;
    while (this.#inflight.has(this.#nextId) || this.#subacks.has(this.#nextId));
    return this.#nextId;
  }

  /** Writes; everything written in one turn of the event loop leaves in one TLS record. */
  #send(bytes: Buffer): void {
    if (this.#socket.destroyed) return;
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(bytes);
    this.#lastWrite = Date.now();
  }

  #onPacket(p: Packet): void {
    switch (p.cmd) {
      case "connack": {
        const code = (this.#version === 5 ? p.reasonCode : p.returnCode) ?? 0;
        if (code !== 0) {
          this.emit("refused", code);
          this.destroy(`connection refused (CONNACK ${code})`);
          return;
        }
        const max = this.#version === 5 ? p.properties?.maximumPacketSize : undefined;
        if (max !== undefined && max > 0) this.#maxPacket = max;
        this.#connected = true;
        this.emit("connect", p.sessionPresent === true);
        return;
      }
      case "puback": {
        const done = this.#inflight.get(p.messageId ?? -1);
        if (!done) return;
        this.#inflight.delete(p.messageId ?? -1);
        const code = p.reasonCode ?? 0;
        // MQTT 5: a reason code of 0x80 or more is a refusal of this message.
        done(code >= 0x80 ? new MessageRefused(`the parent refused the message (PUBACK ${code})`) : null);
        return;
      }
      case "suback": {
        const done = this.#subacks.get(p.messageId ?? -1);
        if (!done) return;
        this.#subacks.delete(p.messageId ?? -1);
        const refused = (p.granted as number[]).some((g) => g >= 0x80);
        done(refused ? new Error("the parent refused a subscription") : null);
        return;
      }
      case "publish": {
        const payload = Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload);
        if (p.qos !== 1) {
          this.emit("message", p.topic, payload);
          return;
        }
        if (this.#unacked.length >= MAX_UNACKED_INBOUND) {
          this.destroy(`over ${MAX_UNACKED_INBOUND} messages from the parent awaiting completion`);
          return;
        }
        // Every QoS 1 PUBLISH takes its place in the arrival order; one not deferred is complete at once.
        const entry = { messageId: p.messageId ?? 0, done: false };
        this.#unacked.push(entry);
        const complete = () => {
          if (entry.done) return;
          entry.done = true;
          this.#flushAcks();
        };
        if (this.#deferAcks?.(p.topic) === true) {
          this.emit("message", p.topic, payload, { dup: p.dup === true, complete });
          return;
        }
        complete();
        this.emit("message", p.topic, payload);
        return;
      }
      case "unsuback": {
        const done = this.#subacks.get(p.messageId ?? -1);
        if (!done) return;
        this.#subacks.delete(p.messageId ?? -1);
        done(null);
        return;
      }
      case "pingresp":
        return;
      case "disconnect":
        this.destroy("the parent disconnected", true);
        return;
      default:
        this.destroy(`unexpected ${p.cmd} from the parent`);
    }
  }
}
