/**
 * A raw MQTT parent over real TLS: answers CONNECT and SUBSCRIBE, answers PUBLISHes with
 * PUBACK only when told to, and sends exactly the packets a test wants. For what a real
 * parent does rarely or never (a malformed method name, 65,535 publishes left unanswered,
 * CONNACK 3 while busy, a connection dropped at one particular publish). Scripted per test
 * through {@link RawParent.connack} and {@link RawParent.onPublish}.
 */
import { join } from "node:path";
import tls from "node:tls";
import mqtt, { type Packet } from "mqtt-packet";
import { afterEach } from "vitest";
import { devTls } from "../../ts/certs/dev-ca.js";
import { tempDir } from "./fixtures.js";

const parents = new Set<RawParent>();
afterEach(async () => {
  await Promise.all([...parents].map((p) => p.close()));
});

/** What a scripted parent does with a PUBLISH it received. */
export type PublishVerdict = "puback" | "ignore" | "drop";

/** Where to listen and which certificate to serve. */
export interface RawParentOptions {
  /** Answer PUBLISHes with PUBACK (default true). */
  puback?: boolean;
  /** A hub's data dir: serve that hub's certificate (`{dir}/certs`), so its edge trusts this parent too. */
  hubDir?: string;
  /** Port on 127.0.0.1 (default a free one). */
  port?: number;
}

export class RawParent {
  readonly #server: tls.Server;
  readonly #sockets = new Set<tls.TLSSocket>();
  /** PUBLISHes received, in order. */
  readonly publishes: Array<{
    topic: string;
    payload: Buffer;
    messageId: number;
    clientId: string;
    /** The PUBLISH's QoS. */
    qos: number;
  }> = [];
  /** CONNECTs received, in order of arrival. */
  readonly connects: Array<{
    clientId: string;
    at: number;
    clean: boolean;
    username?: string;
    password?: string;
    /** The CONNECT's keep alive (seconds), protocol level and whether it carries a will. */
    keepalive: number;
    protocolVersion: number;
    will: boolean;
    /** When that connection closed (ms), once it has. */
    closedAt?: number;
  }> = [];
  /** What clients answered and asked besides PUBLISH (PUBACK, SUBSCRIBE, UNSUBSCRIBE), in order. */
  readonly received: Array<{ cmd: string; clientId: string; messageId: number; topics: string[] }> = [];
  /** The sockets of each client id. */
  readonly #byClient = new Map<string, Set<tls.TLSSocket>>();
  /** Answer PUBLISHes with PUBACK. */
  puback: boolean;
  /** CONNACK's session-present flag for a client id (default false). */
  sessionPresent: (clientId: string) => boolean = () => false;
  /** The CONNACK return code for a client id (default 0, accepted); negative: no CONNACK at all. */
  connack: (clientId: string) => number = () => 0;
  /**
   * Decides what to do with a PUBLISH (default: PUBACK when {@link RawParent.puback});
   * `reply` writes a packet back on that client's connection. "drop" ends the connection
   * without an answer, recording the publish.
   */
  onPublish:
    | ((
        p: { topic: string; payload: Buffer; clientId: string },
        reply: (p: Packet) => void,
      ) => PublishVerdict)
    | undefined;
  readonly ca: string;

  private constructor(server: tls.Server, ca: string, puback: boolean) {
    this.#server = server;
    this.ca = ca;
    this.puback = puback;
  }

  /** A parent on 127.0.0.1, certificate for `localhost`. `puback` alone: as before. */
  static async start(options: boolean | RawParentOptions = {}): Promise<RawParent> {
    const o = typeof options === "boolean" ? { puback: options } : options;
    const material = await devTls(o.hubDir ? join(o.hubDir, "certs") : await tempDir(), "localhost");
    const server = tls.createServer({ cert: material.cert, key: material.key });
    const parent = new RawParent(server, material.ca, o.puback ?? true);
    server.on("secureConnection", (s) => parent.#serve(s));
    await new Promise<void>((resolve) => server.listen(o.port ?? 0, "127.0.0.1", resolve));
    parents.add(parent);
    return parent;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  /** Sends `packet` to the connections of `clientId`. */
  sendTo(clientId: string, packet: Packet): void {
    const bytes = mqtt.generate(packet as Parameters<typeof mqtt.generate>[0]);
    for (const s of this.#byClient.get(clientId) ?? []) s.write(bytes);
  }

  /** Sends `packet` to every connected client. */
  send(packet: Packet): void {
    const bytes = mqtt.generate(packet as Parameters<typeof mqtt.generate>[0]);
    for (const s of this.#sockets) s.write(bytes);
  }

  async close(): Promise<void> {
    parents.delete(this);
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(socket: tls.TLSSocket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    socket.on("error", () => undefined);
    const parser = mqtt.parser({ protocolVersion: 4 });
    const reply = (p: Packet) => {
      if (!socket.destroyed) socket.write(mqtt.generate(p as Parameters<typeof mqtt.generate>[0]));
    };
    let clientId = "";
    let ended = false;
    parser.on("packet", (p: Packet) => {
      // After a drop, what the client had already sent is not read (as a parent that hung up).
      if (ended || socket.destroyed) return;
      if (p.cmd === "connect") {
        clientId = p.clientId;
        this.connects.push({
          clientId,
          at: Date.now(),
          clean: p.clean !== false,
          keepalive: p.keepalive ?? 0,
          protocolVersion: p.protocolVersion ?? 4,
          will: p.will !== undefined && p.will !== null,
          ...(p.username === undefined ? {} : { username: p.username }),
          ...(p.password === undefined ? {} : { password: p.password.toString("utf8") }),
        });
        const entry = this.connects.at(-1);
        socket.on("close", () => {
          if (entry) entry.closedAt = Date.now();
        });
        const mine = this.#byClient.get(clientId) ?? new Set();
        mine.add(socket);
        this.#byClient.set(clientId, mine);
        socket.on("close", () => mine.delete(socket));
        const returnCode = this.connack(clientId);
        if (returnCode < 0) return;
        reply({
          cmd: "connack",
          returnCode,
          sessionPresent: returnCode === 0 && this.sessionPresent(clientId),
        } as Packet);
        if (returnCode !== 0) {
          ended = true;
          socket.end();
        }
      } else if (p.cmd === "subscribe") {
        this.received.push({
          cmd: "subscribe",
          clientId,
          messageId: p.messageId ?? 0,
          topics: p.subscriptions.map((s) => `${s.topic}@${s.qos}`),
        });
        reply({
          cmd: "suback",
          messageId: p.messageId,
          granted: p.subscriptions.map((s) => s.qos),
        } as Packet);
      } else if (p.cmd === "unsubscribe") {
        this.received.push({
          cmd: "unsubscribe",
          clientId,
          messageId: p.messageId ?? 0,
          topics: p.unsubscriptions,
        });
        reply({ cmd: "unsuback", messageId: p.messageId } as Packet);
      } else if (p.cmd === "puback")
        this.received.push({ cmd: "puback", clientId, messageId: p.messageId ?? 0, topics: [] });
      else if (p.cmd === "pingreq") reply({ cmd: "pingresp" } as Packet);
      else if (p.cmd === "publish") {
        const payload = Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload);
        this.publishes.push({ topic: p.topic, payload, messageId: p.messageId ?? 0, clientId, qos: p.qos });
        const verdict =
          this.onPublish?.({ topic: p.topic, payload, clientId }, reply) ??
          (this.puback ? "puback" : "ignore");
        if (verdict === "drop") {
          // What was answered before (earlier PUBACKs) still reaches the client, then the FIN.
          ended = true;
          socket.end();
        } else if (verdict === "puback" && p.qos === 1)
          reply({ cmd: "puback", messageId: p.messageId } as Packet);
      }
    });
    socket.on("data", (d: Buffer) => parser.parse(d));
  }
}
