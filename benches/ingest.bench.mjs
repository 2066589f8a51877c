// MQTT ingest benchmark: N clients (10, 100, 1000) over TLS publish 256 B at QoS 1, with
// 1 or 16 messages in flight each, for a fixed time; msgs/s, PUBACK p50/p99 and the broker's
// CPU-seconds per million messages, for edgehub (acks after fsync), Mosquitto 2.0
// (persistence true: acks from memory, snapshots every autosave_interval) and aedes
// (in-memory), all driven by this generator, which first runs against a null sink to
// show it is not the bottleneck. Results: benches/results/ingest.json.
//
//   npm run build && node benches/ingest.bench.mjs      (BENCH_QUICK=1: shorter, fewer clients;
//   BENCH_COUNTS=100,1000: only those client counts; BENCH_WINDOWS=16; BENCH_BROKERS=edgehub,mosquitto;
//   EDGEHUB_NODE_ARGS=--cpu-prof: flags for the edgehub process)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import mqtt from "mqtt-packet";
import { createSasToken } from "../dist/auth/sas.js";
import {
  cpuSeconds,
  hubCerts,
  provisioningHub,
  startEdgehub,
  startMosquitto,
  startNode,
  threadCpuPerMillion,
  threadCpuSeconds,
} from "./lib/brokers.mjs";
import { connectPacket } from "./lib/mqtt-load.mjs";
import { fmt, save, table } from "./lib/report.mjs";

const QUICK = process.env.BENCH_QUICK === "1";
const COUNTS = process.env.BENCH_COUNTS
  ? process.env.BENCH_COUNTS.split(",").map(Number)
  : QUICK
    ? [10, 100]
    : [10, 100, 1000];
const SECONDS = QUICK ? 3 : 8;
// Every broker first carries the same load for this long on other connections, unmeasured:
// the figures are a running daemon's, not its first seconds' (edgehub's JIT compiles its hot
// path then, about a second of CPU that would be charged to a few thousand messages).
const WARMUP_SECONDS = QUICK ? 1 : 2;
// One in flight is the worst case for a hub that acks after fsync (each client waits for a
// disk round); SDK clients that do not await each send keep several in flight.
const WINDOWS = process.env.BENCH_WINDOWS ? process.env.BENCH_WINDOWS.split(",").map(Number) : [1, 16];
// BENCH_BROKERS=edgehub,mosquitto: only those (default: all; edgehub-wal is the hub with
// `durability: "wal"`, acking after the WAL write without fsync, as IoT Edge does by default).
const BROKERS = process.env.BENCH_BROKERS?.split(",");
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-ingest-"));

/** One client: connects, then keeps `window` messages in flight until `until`. */
function client(port, ca, creds, body, latencies, until, window) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: "localhost", port, ca });
    const parser = mqtt.parser({ protocolVersion: 4 });
    let sent = 0;
    let acked = 0;
    let inflight = 0;
    const sentAt = new Array(65536);
    const publish = () => {
      if (Date.now() >= until.value) {
        if (inflight === 0) {
          socket.end();
          resolve(acked);
        }
        return;
      }
      inflight++;
      sent = (sent % 65535) + 1;
      sentAt[sent] = process.hrtime.bigint();
      socket.write(
        mqtt.generate({
          cmd: "publish",
          topic: creds.topic,
          payload: body,
          qos: 1,
          messageId: sent,
          retain: false,
          dup: false,
        }),
      );
    };
    parser.on("packet", (p) => {
      if (p.cmd === "connack") {
        if (p.returnCode !== 0) return reject(new Error(`CONNACK ${p.returnCode} for ${creds.clientId}`));
        creds.onConnected(() => {
          for (let i = 0; i < window; i++) publish();
        });
      } else if (p.cmd === "puback") {
        acked++;
        inflight--;
        const t0 = sentAt[p.messageId];
        if (latencies.n < latencies.buf.length)
          latencies.buf[latencies.n++] = Number(process.hrtime.bigint() - t0) / 1e6;
        publish();
      }
    });
    socket.on("data", (d) => parser.parse(d));
    socket.on("error", reject);
    socket.on("secureConnect", () => socket.write(connectPacket(creds)));
  });
}

async function load(target, n, ca, credsOf, window, seconds = SECONDS) {
  const body = Buffer.alloc(256, 0x61);
  const latencies = { buf: new Float64Array(4_000_000), n: 0 };
  const until = { value: Number.POSITIVE_INFINITY };
  let connected = 0;
  let release;
  const allConnected = new Promise((r) => {
    release = r;
  });
  const starters = [];
  const runs = [];
  for (let i = 0; i < n; i++) {
    const creds = credsOf(i);
    creds.onConnected = (publish) => {
      starters.push(publish);
      if (++connected === n) release();
    };
    runs.push(client(target.port, ca, creds, body, latencies, until, window));
    if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
  }
  await allConnected;
  const cpu0 = target.pid ? cpuSeconds(target.pid) : 0;
  const threads0 = target.pid ? threadCpuSeconds(target.pid) : {};
  const t0 = Date.now();
  until.value = t0 + seconds * 1000;
  for (const s of starters) s();
  const acked = (await Promise.all(runs)).reduce((a, b) => a + b, 0);
  const elapsed = (Date.now() - t0) / 1000;
  const cpu = target.pid ? cpuSeconds(target.pid) - cpu0 : 0;
  const threads = target.pid ? threadCpuPerMillion(threads0, threadCpuSeconds(target.pid), acked) : {};
  const lat = latencies.buf.subarray(0, latencies.n).sort();
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return {
    msgsPerSec: Math.round(acked / elapsed),
    p50Ms: +q(0.5).toFixed(2),
    p99Ms: +q(0.99).toFixed(2),
    cpuSecPerMillion: +((cpu / acked) * 1e6).toFixed(1),
    threadCpuSecPerMillion: threads,
  };
}

try {
  const max = Math.max(...COUNTS);
  const dataDir = join(root, "edgehub-data");
  // Register the devices first (in-process), then run the hub as its own process.
  const setup = await provisioningHub(dataDir);
  const keys = [];
  for (let i = 0; i < max; i++)
    keys.push(
      (await setup.registry.createDevice({ deviceId: `dev${i}` })).authentication.symmetricKey.primaryKey,
    );
  const ca = setup.caCertificate;
  await setup.close();
  const certs = hubCerts(dataDir);
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const hubCreds = (i) => ({
    clientId: `dev${i}`,
    username: `localhost/dev${i}/?api-version=2021-04-12`,
    password: Buffer.from(createSasToken(`localhost/devices/dev${i}`, keys[i], expiry)),
    topic: `devices/dev${i}/messages/events/`,
  });
  const plainCreds = (i) => ({ clientId: `dev${i}`, topic: `devices/dev${i}/messages/events/` });
  const rows = [];
  for (const n of COUNTS) {
    for (const window of WINDOWS) {
      for (const [make, creds] of [
        [() => startNode("null-sink", "null-sink.mjs", 18880, certs), plainCreds, "null-sink"],
        [
          () => startNode("fsync-floor", "null-sink.mjs", 18884, certs, join(root, "fsync-floor.log")),
          plainCreds,
          "fsync-floor",
        ],
        [() => startEdgehub(dataDir, 18881), hubCreds, "edgehub"],
        [() => startEdgehub(dataDir, 18885, { durability: "wal" }, "edgehub-wal"), hubCreds, "edgehub-wal"],
        [() => startMosquitto(mkdtempSync(join(root, "mosq-")), 18882, certs), plainCreds, "mosquitto"],
        [() => startNode("aedes", "aedes-broker.mjs", 18883, certs), plainCreds, "aedes"],
      ].filter(([, , name]) => !BROKERS || BROKERS.includes(name))) {
        const target = await make();
        try {
          await load(target, n, ca, creds, window, WARMUP_SECONDS);
          const r = await load(target, n, ca, creds, window);
          rows.push({ clients: n, inFlight: window, broker: target.name, ...r });
          console.log(
            `${n} clients x ${window} in flight -> ${target.name}: ${fmt(r.msgsPerSec)} msgs/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${r.cpuSecPerMillion} CPU-s/M`,
          );
        } finally {
          await target.stop();
        }
      }
    }
  }
  console.log(`\ningest, QoS 1, 256 B, ${SECONDS} s per run after ${WARMUP_SECONDS} s of warm-up`);
  table(rows.map((r) => ({ ...r, msgsPerSec: fmt(r.msgsPerSec) })));
  save("ingest", {
    workload: `N MQTT/TLS clients, QoS 1, 256 B, 1 or 16 messages in flight each, ${SECONDS} s measured after ${WARMUP_SECONDS} s of the same load unmeasured; edgehub acks after fsync (edgehub-wal: after the WAL write, no fsync), Mosquitto 2.0 (persistence true) and aedes ack from memory; null-sink and fsync-floor are reference peers (below)`,
    rows,
  });
} finally {
  rmSync(root, { recursive: true, force: true });
}
