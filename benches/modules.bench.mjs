// Module to module through the hub, and twin reported patches.
//
//   npm run build:ts && node benches/modules.bench.mjs       (BENCH_SECONDS=8, BENCH_WINDOW=64)
//
// edgehub: module `sender` publishes output `out1` at QoS 1 (a window in flight); a route
// `FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint("/modules/receiver/inputs/in1")`
// stores each message durably in the receiver's input queue before the sender's PUBACK, and
// the hub delivers it to module `receiver` at QoS 1. Mosquitto (persistence true, acking
// from memory): the same two clients on a topic. Figures: messages received per second and
// the latency from publish to arrival (p50, p99), measured in the receiver from a timestamp
// in the payload. Twin: one module sends reported patches with a window of requests in
// flight and counts the hub's 204 answers (each patch stored durably first).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import mqtt from "mqtt-packet";
import { createSasToken } from "../dist/auth/sas.js";
import {
  cpuSeconds,
  freePort,
  hubCerts,
  provisioningHub,
  startEdgehub,
  startMosquitto,
} from "./lib/brokers.mjs";
import { connectPacket } from "./lib/mqtt-load.mjs";
import { fmt, save, table } from "./lib/report.mjs";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 8);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 64);
const BODY = 256;
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-modules-"));

/** An MQTT client over TLS: resolves once CONNACKed; `on(packet)` sees every later packet. */
function client(port, ca, connect, on) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port, ca, servername: "localhost" });
    const parser = mqtt.parser({ protocolVersion: 4 });
    parser.on("packet", (p) => {
      if (p.cmd === "connack") {
        if (p.returnCode !== 0) return reject(new Error(`CONNACK ${p.returnCode} for ${connect.clientId}`));
        return resolve(socket);
      }
      on(p, socket);
    });
    socket.on("data", (d) => parser.parse(d));
    socket.on("error", reject);
    socket.on("secureConnect", () => socket.write(connectPacket(connect)));
  });
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

/** Sender and receiver for `SECONDS`: received msgs/s and publish-to-arrival latency. */
async function moduleToModule({ pid, port, ca, sender, receiver, publishTopic, subscribeTopic }) {
  const latencies = new Float64Array(20_000_000);
  let received = 0;
  let measuring = false;
  const rx = await client(port, ca, receiver, (p, socket) => {
    if (p.cmd !== "publish") return;
    if (p.qos === 1) socket.write(mqtt.generate({ cmd: "puback", messageId: p.messageId }));
    if (!measuring) return;
    const sentAt = p.payload.readDoubleLE(0);
    latencies[received++] = performance.timeOrigin + performance.now() - sentAt;
  });
  await new Promise((resolve) => {
    rx.write(
      mqtt.generate({ cmd: "subscribe", messageId: 1, subscriptions: [{ topic: subscribeTopic, qos: 1 }] }),
    );
    setTimeout(resolve, 200);
  });
  let inflight = 0;
  let id = 0;
  let until = 0;
  const body = Buffer.alloc(BODY, 0x61);
  let tx;
  const publish = () => {
    while (inflight < WINDOW && Date.now() < until) {
      inflight++;
      id = (id % 65535) + 1;
      const payload = Buffer.from(body);
      payload.writeDoubleLE(performance.timeOrigin + performance.now(), 0);
      tx.write(
        mqtt.generate({
          cmd: "publish",
          topic: publishTopic,
          payload,
          qos: 1,
          messageId: id,
          retain: false,
          dup: false,
        }),
      );
    }
  };
  tx = await client(port, ca, sender, (p) => {
    if (p.cmd === "puback") {
      inflight--;
      publish();
    }
  });
  measuring = true;
  const cpu0 = cpuSeconds(pid);
  const t0 = Date.now();
  until = t0 + SECONDS * 1000;
  publish();
  await new Promise((r) => setTimeout(r, SECONDS * 1000 + 1000));
  const elapsed = (Date.now() - t0) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  tx.destroy();
  rx.destroy();
  const lat = latencies.subarray(0, received).sort();
  return {
    msgsPerSec: Math.round(received / Math.min(elapsed, SECONDS)),
    cpuSecPerMillion: +((cpu / Math.max(received, 1)) * 1e6).toFixed(1),
    p50Ms: +quantile(lat, 0.5).toFixed(2),
    p99Ms: +quantile(lat, 0.99).toFixed(2),
  };
}

/** Reported patches from one module with WINDOW requests in flight: answered patches per second. */
async function reportedPatches({ port, ca, module }) {
  let answered = 0;
  let inflight = 0;
  let rid = 0;
  let until = 0;
  let socket;
  const send = () => {
    while (inflight < WINDOW && Date.now() < until) {
      inflight++;
      rid++;
      socket.write(
        mqtt.generate({
          cmd: "publish",
          topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`,
          payload: Buffer.from(JSON.stringify({ temperature: rid % 100, status: rid % 2 ? "ok" : "hot" })),
          qos: 0,
          retain: false,
          dup: false,
        }),
      );
    }
  };
  socket = await client(port, ca, module, (p) => {
    if (p.cmd === "suback") return;
    if (p.cmd === "publish" && p.topic.startsWith("$iothub/twin/res/204/")) {
      answered++;
      inflight--;
      send();
    }
  });
  socket.write(
    mqtt.generate({
      cmd: "subscribe",
      messageId: 1,
      subscriptions: [{ topic: "$iothub/twin/res/#", qos: 0 }],
    }),
  );
  await new Promise((r) => setTimeout(r, 200));
  const t0 = Date.now();
  until = t0 + SECONDS * 1000;
  send();
  await new Promise((r) => setTimeout(r, SECONDS * 1000 + 500));
  socket.destroy();
  return { patchesPerSec: Math.round(answered / SECONDS) };
}

try {
  const dataDir = join(root, "edgehub-data");
  const setup = await provisioningHub(dataDir);
  await setup.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
  const keys = {};
  for (const m of ["sender", "receiver", "twin"])
    keys[m] = (
      await setup.registry.createModule({ deviceId: "edge1", moduleId: m })
    ).authentication.symmetricKey.primaryKey;
  const ca = setup.caCertificate;
  await setup.close();
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const login = (m) => ({
    clientId: `edge1/${m}`,
    username: `localhost/edge1/${m}/?api-version=2021-04-12`,
    password: Buffer.from(createSasToken(`localhost/devices/edge1/modules/${m}`, keys[m], expiry)),
  });
  const rows = [];
  const edgehub = await startEdgehub(dataDir, await freePort(), {
    routes: {
      m2m: 'FROM /messages/modules/sender/outputs/out1 INTO BrokeredEndpoint("/modules/receiver/inputs/in1")',
    },
  });
  try {
    const r = await moduleToModule({
      pid: edgehub.pid,
      port: edgehub.port,
      ca,
      sender: login("sender"),
      receiver: login("receiver"),
      publishTopic: "devices/edge1/modules/sender/messages/events/%24.on=out1",
      subscribeTopic: "devices/edge1/modules/receiver/inputs/#",
    });
    rows.push({ broker: "edgehub", ...r });
    console.log(
      `module to module -> edgehub: ${fmt(r.msgsPerSec)} msgs/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`,
    );
    const t = await reportedPatches({ port: edgehub.port, ca, module: login("twin") });
    console.log(`twin reported patches -> edgehub: ${fmt(t.patchesPerSec)} patches/s`);
    rows.push({
      broker: "edgehub (twin reported patches)",
      msgsPerSec: t.patchesPerSec,
      p50Ms: null,
      p99Ms: null,
      cpuSecPerMillion: null,
    });
  } finally {
    await edgehub.stop();
  }
  const certs = hubCerts(dataDir);
  const mosquitto = await startMosquitto(mkdtempSync(join(root, "mosq-")), await freePort(), certs);
  try {
    const r = await moduleToModule({
      pid: mosquitto.pid,
      port: mosquitto.port,
      ca: readFileSync(certs.ca),
      sender: { clientId: "sender" },
      receiver: { clientId: "receiver" },
      publishTopic: "m2m/out1",
      subscribeTopic: "m2m/#",
    });
    rows.push({ broker: "mosquitto", ...r });
    console.log(
      `module to module -> mosquitto: ${fmt(r.msgsPerSec)} msgs/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms`,
    );
  } finally {
    await mosquitto.stop();
  }
  console.log(`\nmodule to module, QoS 1, ${BODY} B, window ${WINDOW}, ${SECONDS} s`);
  table(rows.map((r) => ({ ...r, msgsPerSec: fmt(r.msgsPerSec) })));
  save("modules", {
    workload: `module to module through the hub: one sender (QoS 1, ${BODY} B, ${WINDOW} in flight) and one receiver, ${SECONDS} s; edgehub stores each message in the receiver's input queue (fsync) before the sender's PUBACK and delivers it at QoS 1; Mosquitto 2.0 (persistence true) acks from memory. Twin: reported patches with ${WINDOW} requests in flight, each stored before its 204`,
    rows,
  });
} finally {
  rmSync(root, { recursive: true, force: true });
}
