// Memory per socket: the resident memory one idle authenticated MQTT connection costs the
// hub, and one socket of each unauthenticated kind (the figures the `limits` defaults are
// sized by, ts/config/limits.ts).
//
//   npm run build:ts && node benches/sockets.bench.mjs        (BENCH_SOCKETS=1000)
//
// For each kind, a fresh hub process (the shipped launcher; limits lifted so every socket
// is admitted and none times out during the run), N sockets opened from this process and
// held idle, and the hub's VmRSS read before and with them (median of 5 samples after the
// sockets settle, 1 s). Per socket = (with - before) / N.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import mqtt from "mqtt-packet";
import { createSasToken } from "../dist/auth/sas.js";
import { freePort, provisioningHub, startEdgehub } from "./lib/brokers.mjs";
import { connectPacket } from "./lib/mqtt-load.mjs";
import { save, table } from "./lib/report.mjs";

const N = Number(process.env.BENCH_SOCKETS ?? 1000);
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-sockets-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const held = [];

function rssBytes(pid) {
  const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb ?? 0) * 1024;
}

/** Median of 5 samples 100 ms apart, after `settleMs`. */
async function settledRss(pid, settleMs = 1000) {
  await sleep(settleMs);
  const samples = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssBytes(pid));
    await sleep(100);
  }
  return samples.sort((a, b) => a - b)[2];
}

/** Opens `N` sockets with `open(i)` (50 at a time: a burst of handshakes is not the point here). */
async function openAll(open) {
  for (let i = 0; i < N; i += 50) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 50); j++) batch.push(open(j));
    held.push(...(await Promise.all(batch)));
  }
}

function connected(socket, event) {
  return new Promise((resolve, reject) => {
    socket.once(event, () => resolve(socket));
    socket.once("error", reject);
  });
}

const KINDS = {
  "authenticated MQTT/TLS (idle, after CONNACK)": ({ mqtts, ca, creds }) =>
    openAll((i) => {
      const s = tls.connect({ host: "127.0.0.1", servername: "localhost", port: mqtts, ca });
      const parser = mqtt.parser({ protocolVersion: 4 });
      s.on("data", (d) => parser.parse(d));
      s.once("secureConnect", () => s.write(connectPacket(creds(i))));
      return new Promise((resolve, reject) => {
        parser.once("packet", (p) =>
          p.cmd === "connack" && p.returnCode === 0
            ? resolve(s)
            : reject(new Error(`CONNACK ${p.returnCode}`)),
        );
        s.once("error", reject);
      });
    }),
  "TCP only, no ClientHello": ({ mqtts }) =>
    openAll(() => connected(net.connect({ host: "127.0.0.1", port: mqtts }), "connect")),
  "TLS done, no MQTT CONNECT": ({ mqtts, ca }) =>
    openAll(() =>
      connected(
        tls.connect({ host: "127.0.0.1", servername: "localhost", port: mqtts, ca }),
        "secureConnect",
      ),
    ),
  "HTTPS, half-sent request headers": ({ https, ca }) =>
    openAll(async () => {
      const s = await connected(
        tls.connect({ host: "127.0.0.1", servername: "localhost", port: https, ca }),
        "secureConnect",
      );
      s.write("GET /edge/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
      return s;
    }),
};

try {
  const dataDir = join(root, "edgehub-data");
  // Devices are registered in-process first; the hub then runs as its own process.
  const setup = await provisioningHub(dataDir);
  const keys = [];
  const t0 = performance.now();
  for (let i = 0; i < N; i += 250) {
    const batch = [];
    for (let j = i; j < Math.min(N, i + 250); j++)
      batch.push(setup.registry.createDevice({ deviceId: `dev${j}` }));
    for (const d of await Promise.all(batch)) keys.push(d.authentication.symmetricKey.primaryKey);
  }
  const ca = setup.caCertificate;
  await setup.close();
  console.log(`registered ${N} devices in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const creds = (i) => ({
    clientId: `dev${i}`,
    username: `localhost/dev${i}/?api-version=2021-04-12`,
    password: Buffer.from(createSasToken(`localhost/devices/dev${i}`, keys[i], expiry)),
  });
  const lifted = {
    maxConnections: 10 * N,
    maxUnauthenticatedPerAddress: 10 * N,
    tlsHandshakeTimeoutMs: 600_000,
    mqttConnectTimeoutMs: 600_000,
    httpHeadersTimeoutMs: 600_000,
    httpRequestTimeoutMs: 600_000,
  };
  const workload = `${N} sockets of one kind held idle against a fresh hub process (bin/edgehub, limits lifted), RSS before and with them (median of 5 samples after 1 s)`;
  console.log(workload);
  const rows = [];
  for (const [kind, open] of Object.entries(KINDS)) {
    const mqtts = await freePort();
    const https = await freePort();
    const hub = await startEdgehub(dataDir, mqtts, { listen: { https }, limits: lifted });
    const before = await settledRss(hub.pid);
    await open({ mqtts, https, ca, creds });
    const withSockets = await settledRss(hub.pid);
    for (const s of held.splice(0)) s.destroy();
    await hub.stop();
    rows.push({
      kind,
      sockets: N,
      rssBeforeMB: +(before / 2 ** 20).toFixed(1),
      rssWithMB: +(withSockets / 2 ** 20).toFixed(1),
      perSocketKB: +((withSockets - before) / N / 1024).toFixed(1),
    });
    console.log(`${kind}: ${rows.at(-1).perSocketKB} KB per socket`);
  }
  table(rows);
  save("sockets", { workload, sockets: N, rows });
} finally {
  for (const s of held) s.destroy();
  rmSync(root, { recursive: true, force: true });
}
