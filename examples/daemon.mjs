#!/usr/bin/env node
/**
 * A small gateway daemon that embeds edgehub: it starts a hub on a temporary data dir with
 * ephemeral ports, creates a device through the registry, connects that device over MQTT/TLS
 * as IoT Hub's SDKs do (here with node's own `tls` and a few hand-written MQTT 3.1.1 packets,
 * so the example needs nothing but edgehub), receives the device's telemetry from the hub's
 * built-in events queue, and shuts down cleanly. `node examples/daemon.mjs`; exits 0.
 *
 * A real daemon keeps the hub running and closes it on SIGTERM, as `edgehub start` does.
 */
import { createHmac } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { EdgeHub, EVENTS_QUEUE } from "edgehub";

const hostname = "localhost";
const dataDir = await mkdtemp(join(tmpdir(), "edgehub-daemon-"));
const say = (line) => process.stdout.write(`daemon: ${line}\n`);

const hub = await EdgeHub.start({
  hostname,
  dataDir,
  listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: 0 },
  logLevel: "warn",
});
try {
  say(`hub started on mqtts://127.0.0.1:${hub.ports.mqtts}, data in ${dataDir}`);

  // Keys are generated (and sealed at rest in the data dir) when none are given.
  const device = await hub.registry.createDevice({ deviceId: "sensor-1" });
  say(`created device ${device.deviceId}`);

  const reading = JSON.stringify({ temperature: 21.5, at: new Date().toISOString() });
  await sendTelemetry({
    port: hub.ports.mqtts,
    ca: hub.caCertificate,
    deviceId: device.deviceId,
    key: device.authentication.symmetricKey.primaryKey,
    body: reading,
  });
  say(`device ${device.deviceId} sent ${reading} and got its PUBACK (the message is on disk)`);

  // A root hub keeps device-to-cloud messages in its built-in events queue, as IoT Hub does.
  const [message] = await hub.store.read(EVENTS_QUEUE, { limit: 10 });
  if (!message || message.body.toString() !== reading)
    throw new Error(`expected ${reading} in ${EVENTS_QUEUE}, found ${message?.body.toString()}`);
  say(`received from ${message.properties["$.cdid"]}: ${message.body.toString()} (offset ${message.offset})`);
  await hub.store.ack(EVENTS_QUEUE, message.offset);
} finally {
  await hub.close();
  await rm(dataDir, { recursive: true, force: true });
}
say("hub closed, exiting 0");

/**
 * One device session as IoT Hub's MQTT speaks it: CONNECT with a SAS token, one QoS 1
 * PUBLISH of telemetry, wait for its PUBACK, DISCONNECT. (A real device uses the
 * azure-iot-device SDK with `HostName=…;DeviceId=…;SharedAccessKey=…;GatewayHostName=…`.)
 */
function sendTelemetry({ port, ca, deviceId, key, body }) {
  const str = (s) => {
    const b = Buffer.from(s);
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const packet = (type, ...parts) => {
    const rest = Buffer.concat(parts);
    const len = [];
    let n = rest.length;
    do {
      len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>= 7;
    } while (n > 0);
    return Buffer.concat([Buffer.from([type, ...len]), rest]);
  };
  // SAS: sig = base64(HMAC-SHA256(base64decode(key), url-encoded resource + "\n" + expiry)).
  const sr = encodeURIComponent(`${hostname}/devices/${deviceId}`);
  const se = Math.floor(Date.now() / 1000) + 3600;
  const sig = createHmac("sha256", Buffer.from(key, "base64")).update(`${sr}\n${se}`).digest("base64");
  const password = `SharedAccessSignature sr=${sr}&sig=${encodeURIComponent(sig)}&se=${se}`;
  const connect = packet(
    0x10,
    str("MQTT"),
    Buffer.from([4, 0xc2, 0, 60]), // MQTT 3.1.1; username, password, clean session; keepalive 60 s
    str(deviceId),
    str(`${hostname}/${deviceId}/?api-version=2021-04-12`),
    str(password),
  );
  const publish = packet(
    0x32, // PUBLISH, QoS 1
    str(`devices/${deviceId}/messages/events/$.ct=application%2Fjson&$.ce=utf-8`),
    Buffer.from([0, 1]), // packet id 1
    Buffer.from(body),
  );
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, servername: hostname, ca });
    let received = Buffer.alloc(0);
    socket.on("secureConnect", () => socket.write(connect));
    socket.on("error", reject);
    socket.on("close", () => reject(new Error("the hub closed the connection")));
    socket.on("data", (chunk) => {
      received = Buffer.concat([received, chunk]);
      while (received.length >= 2 && received.length >= 2 + received[1]) {
        const [type, , ...rest] = received.subarray(0, 2 + received[1]);
        received = received.subarray(2 + received[1]);
        if (type === 0x20) {
          if (rest[1] !== 0) return reject(new Error(`CONNACK refused the device: return code ${rest[1]}`));
          socket.write(publish);
        } else if (type === 0x40) {
          socket.end(Buffer.from([0xe0, 0])); // DISCONNECT
          socket.removeAllListeners("close");
          resolve();
        }
      }
    });
  });
}
