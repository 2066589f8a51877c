/** A raw MQTT client over real TLS for sending exactly the packets (or bytes) a test wants. */
import net from "node:net";
import tls from "node:tls";
import { SharedAccessSignature } from "azure-iot-common";
import mqtt, { type Packet } from "mqtt-packet";
import type { EdgeHub } from "../../ts/index.js";

export interface RawClient {
  send(packet: Packet): void;
  sendBytes(bytes: Buffer): void;
  /** The next packet from the hub, or `"closed"` once the hub closed the connection. */
  next(timeoutMs?: number): Promise<Packet | "closed">;
  closed: Promise<void>;
  end(): void;
}

/**
 * A raw client over TLS to the hub at `port`; `tlsOptions` adds e.g. a client certificate,
 * and `localAddress` the client's own address (e.g. `127.0.0.2`, another host on loopback).
 */
export async function rawClient(
  port: number,
  ca: string,
  { localAddress, ...tlsOptions }: tls.ConnectionOptions & { localAddress?: string } = {},
): Promise<RawClient> {
  const socket = localAddress
    ? tls.connect({
        socket: net.connect({ host: "127.0.0.1", port, localAddress }),
        servername: "localhost",
        ca,
        ...tlsOptions,
      })
    : tls.connect({ host: "localhost", port, ca, ...tlsOptions });
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

/**
 * The CONNECT an IoT Hub device (or module: `deviceId/moduleId`) sends: client id, username
 * and an SDK-made SAS token for `localhost`; no password when `key` is undefined (a login by
 * TLS client certificate).
 */
export function deviceConnect(
  deviceId: string,
  key: string | undefined,
  over: Record<string, unknown> = {},
): Packet {
  const [device, module] = deviceId.split("/");
  const token =
    key === undefined
      ? undefined
      : SharedAccessSignature.create(
          `localhost/devices/${device}${module === undefined ? "" : `/modules/${module}`}`,
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
    ...(token === undefined ? {} : { password: Buffer.from(token.toString()) }),
    ...over,
  } as Packet;
}

/** A raw client of `deviceId` (clean session) connected to the hub at `port`; expects CONNACK 0. */
export async function connectedRaw(
  port: number,
  ca: string,
  deviceId: string,
  key: string,
  localAddress?: string,
): Promise<RawClient> {
  const c = await rawClient(port, ca, localAddress ? { localAddress } : {});
  c.send(deviceConnect(deviceId, key, { clean: true }));
  const ack = await c.next();
  if (ack === "closed" || ack.cmd !== "connack" || ack.returnCode !== 0) {
    throw new Error(`${deviceId} was not let in: ${JSON.stringify(ack)}`);
  }
  return c;
}

/** Publishes `payload` on `topic` at QoS 1; true on its PUBACK, false if the hub closed the connection instead. */
export async function publishQos1(
  c: RawClient,
  topic: string,
  payload: Buffer,
  messageId = 1,
): Promise<boolean> {
  c.send({ cmd: "publish", topic, payload, qos: 1, messageId, retain: false, dup: false } as Packet);
  const p = await c.next();
  if (p === "closed") return false;
  if (p.cmd !== "puback" || p.messageId !== messageId)
    throw new Error(`expected PUBACK ${messageId}, got ${JSON.stringify(p)}`);
  return true;
}

/**
 * Publishes telemetry of `deviceId` with property `seq` (and `bag`, more url-encoded
 * properties) at QoS 1; true on its PUBACK, false if the hub closed the connection instead.
 */
export function publishSeq(
  c: RawClient,
  deviceId: string,
  seq: number,
  body: Buffer = Buffer.from(`m${seq}`),
  bag = "",
): Promise<boolean> {
  return publishQos1(c, `devices/${deviceId}/messages/events/seq=${seq}${bag}`, body, (seq % 65535) + 1);
}

/** A device with C2D messages queued for it, connected raw and subscribed to them (not acknowledging). */
export async function c2dListener(
  hub: EdgeHub,
  deviceId: string,
  key: string,
  queued: number,
): Promise<
  RawClient & { topic: string; publishes(n: number): Promise<Array<{ body: string; messageId: number }>> }
> {
  for (let i = 0; i < queued; i++) await hub.delivery.sendC2D(deviceId, { body: Buffer.from(`cmd-${i}`) });
  const c = await connectedRaw(hub.ports.mqtts, hub.caCertificate, deviceId, key);
  const topic = `devices/${deviceId}/messages/devicebound/#`;
  c.send({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic, qos: 1 }] } as Packet);
  return {
    ...c,
    topic,
    /** The next `n` PUBLISHes from the hub (other packets skipped). */
    publishes: async (n) => {
      const got: Array<{ body: string; messageId: number }> = [];
      while (got.length < n) {
        const p = await c.next();
        if (p === "closed") throw new Error(`${deviceId}: connection closed`);
        if (p.cmd === "publish") got.push({ body: p.payload.toString(), messageId: p.messageId ?? 0 });
      }
      return got;
    },
  };
}

/** True when `topic` is the hub's twin answer to request `rid` (`$iothub/twin/res/{status}/?$rid=…[&$version=…]`). */
export function answers(topic: string, rid: number): boolean {
  return topic.startsWith("$iothub/twin/res/") && new RegExp(`[?&]\\$rid=${rid}(&|$)`).test(topic);
}
