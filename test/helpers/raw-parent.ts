/**
 * A raw MQTT parent over real TLS: accepts every CONNECT and SUBSCRIBE, answers PUBLISHes
 * with PUBACK only when told to, and sends exactly the packets a test wants. For what a
 * real parent never does (a malformed method name, 65,535 publishes left unanswered).
 */
import tls from "node:tls";
import mqtt, { type Packet } from "mqtt-packet";
import { afterEach } from "vitest";
import { devTls } from "../../ts/certs/dev-ca.js";
import { tempDir } from "./fixtures.js";

const parents = new Set<RawParent>();
afterEach(async () => {
  await Promise.all([...parents].map((p) => p.close()));
});

export class RawParent {
  readonly #server: tls.Server;
  readonly #sockets = new Set<tls.TLSSocket>();
  /** PUBLISHes received, in order. */
  readonly publishes: Array<{ topic: string; payload: Buffer; messageId: number }> = [];
  /** Answer PUBLISHes with PUBACK. */
  puback: boolean;
  readonly ca: string;

  private constructor(server: tls.Server, ca: string, puback: boolean) {
    this.#server = server;
    this.ca = ca;
    this.puback = puback;
  }

  /** A parent on a free port of 127.0.0.1, certificate for `localhost`. */
  static async start(puback = true): Promise<RawParent> {
    const material = await devTls(await tempDir(), "localhost");
    const server = tls.createServer({ cert: material.cert, key: material.key });
    const parent = new RawParent(server, material.ca, puback);
    server.on("secureConnection", (s) => parent.#serve(s));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    parents.add(parent);
    return parent;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
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
    const reply = (p: Packet) => socket.write(mqtt.generate(p as Parameters<typeof mqtt.generate>[0]));
    parser.on("packet", (p: Packet) => {
      if (p.cmd === "connect") reply({ cmd: "connack", returnCode: 0, sessionPresent: false } as Packet);
      else if (p.cmd === "subscribe")
        reply({ cmd: "suback", messageId: p.messageId, granted: p.subscriptions.map(() => 0) } as Packet);
      else if (p.cmd === "pingreq") reply({ cmd: "pingresp" } as Packet);
      else if (p.cmd === "publish") {
        const payload = Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload);
        this.publishes.push({ topic: p.topic, payload, messageId: p.messageId ?? 0 });
        if (this.puback && p.qos === 1) reply({ cmd: "puback", messageId: p.messageId } as Packet);
      }
    });
    socket.on("data", (d: Buffer) => parser.parse(d));
  }
}
