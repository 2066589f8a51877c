/** A raw MQTT client over real TLS for sending exactly the packets (or bytes) a test wants. */
import tls from "node:tls";
import { SharedAccessSignature } from "azure-iot-common";
import mqtt, { type Packet } from "mqtt-packet";

export interface RawClient {
  send(packet: Packet): void;
  sendBytes(bytes: Buffer): void;
  /** The next packet from the hub, or `"closed"` once the hub closed the connection. */
  next(timeoutMs?: number): Promise<Packet | "closed">;
  closed: Promise<void>;
  end(): void;
}

export async function rawClient(port: number, ca: string): Promise<RawClient> {
  const socket = tls.connect({ host: "localhost", port, ca });
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  const parser = mqtt.parser({ protocolVersion: 4 });
  const queue: Array<Packet | "closed"> = [];
  const waiters: Array<(p: Packet | "closed") => void> = [];
  const push = (p: Packet | "closed") => {
    const w = waiters.shift();
    if (w) w(p);
    else queue.push(p);
  };
  parser.on("packet", push);
  socket.on("data", (d: Buffer) => parser.parse(d));
  socket.on("error", () => undefined);
  const closed = new Promise<void>((resolve) =>
    socket.on("close", () => {
      push("closed");
      resolve();
    }),
  );
  return {
    send: (p) => socket.write(mqtt.generate(p as Parameters<typeof mqtt.generate>[0])),
    sendBytes: (b) => socket.write(b),
    next: (timeoutMs = 5000) =>
      new Promise((resolve, reject) => {
        const q = queue.shift();
        if (q !== undefined) return resolve(q);
        const t = setTimeout(() => reject(new Error("no packet from the hub in time")), timeoutMs);
        waiters.push((p) => {
          clearTimeout(t);
          resolve(p);
        });
      }),
    closed,
    end: () => socket.destroy(),
  };
}

/** The CONNECT an IoT Hub device sends: client id, username and an SDK-made SAS token for `localhost`. */
export function deviceConnect(deviceId: string, key: string, over: Record<string, unknown> = {}): Packet {
  const token = SharedAccessSignature.create(
    `localhost/devices/${deviceId}`,
    "",
    key,
    Math.floor(Date.now() / 1000) + 600,
  );
  return {
    cmd: "connect",
    protocolId: "MQTT",
    protocolVersion: 4,
    clean: false,
    clientId: deviceId,
    keepalive: 60,
    username: `localhost/${deviceId}/?api-version=2021-04-12`,
    password: Buffer.from(token.toString()),
    ...over,
  } as Packet;
}
