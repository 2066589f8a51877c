// Soak: an edge hub under steady load for minutes, its uplink cut every minute. 1000
// MQTT/TLS devices stay connected and publish QoS 1 (256 B) at 5k msgs/s in all, paced (a
// device with 8 unacknowledged messages skips its turn: counted as "behind"); the edge
// forwards to a root hub through a relay that is cut at 30 s past every minute for
// --cut-secs. Every --sample-secs the edge's RSS (/proc/<pid>/status), its open descriptors
// (/proc/<pid>/fd), its event-loop delay (GET /edge/status: p99 and max over the hub's last
// 5 s window) and its backlog are sampled; the series and its first/last/max are printed
// and saved to benches/results/soak.json. Flat means: the last minute's figures are those
// of the first minute after warm-up, give or take the backlog of a cut.
//
//   npm run build:ts && node benches/soak.mjs [--minutes 10] [--devices 1000] [--rate 5000]
//                                             [--cut-secs 10] [--sample-secs 5] [--drain-secs 120]
//   --drain-secs: how long the backlog may take to drain once the load stops (then it is reported).
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { parseArgs } from "node:util";
import mqtt from "mqtt-packet";
import { createSasToken } from "../dist/auth/sas.js";
import { freePort, provisioningHub, startEdgehub } from "./lib/brokers.mjs";
import { connectPacket } from "./lib/mqtt-load.mjs";
import { startRelay } from "./lib/relay.mjs";
import { save, table } from "./lib/report.mjs";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    devices: { type: "string", default: "1000" },
    rate: { type: "string", default: "5000" },
    "cut-secs": { type: "string", default: "10" },
    "sample-secs": { type: "string", default: "5" },
    "drain-secs": { type: "string", default: "120" },
  },
});
const MINUTES = Number(args.minutes);
const DEVICES = Number(args.devices);
const RATE = Number(args.rate);
const CUT_SECS = Number(args["cut-secs"]);
const SAMPLE_SECS = Number(args["sample-secs"]);
const DRAIN_SECS = Number(args["drain-secs"]);
const WINDOW = 8;
const BODY = Buffer.alloc(256, 0x61);
const EDGE_ID = "edge1";
const TICK_MS = 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (bytes) => +(bytes / 2 ** 20).toFixed(1);

/** The root with the edge and its children registered, both as processes; the edge's uplink through a relay. */
async function startSite(dir) {
  const rootData = join(dir, "root", "data");
  const edgeData = join(dir, "edge", "data");
  await mkdir(join(dir, "root"), { recursive: true });
  await mkdir(join(dir, "edge"), { recursive: true });
  const setup = await provisioningHub(rootData);
  const edge = await setup.registry.createDevice({ deviceId: EDGE_ID, capabilities: { iotEdge: true } });
  const keys = [];
  for (let i = 0; i < DEVICES; i++) {
    const d = await setup.registry.createDevice({ deviceId: `soak${i}`, deviceScope: edge.deviceScope });
    keys.push(d.authentication.symmetricKey.primaryKey);
  }
  const rootCaFile = setup.caFile;
  await setup.close();
  const ports = {
    root: await freePort(),
    rootHttps: await freePort(),
    edge: await freePort(),
    edgeHttps: await freePort(),
  };
  // The root keeps what it receives for a minute only: 5k msgs/s for 10 minutes would be 3M.
  const root = await startEdgehub(
    rootData,
    ports.root,
    { listen: { https: ports.rootHttps }, eventsRetentionSecs: 60 },
    "root",
  );
  const relay = await startRelay(ports.root);
  const edgeHub = await startEdgehub(
    edgeData,
    ports.edge,
    {
      hostname: "127.0.0.1",
      logLevel: "info",
      listen: { https: ports.edgeHttps },
      parent: {
        hostname: "localhost",
        port: relay.port,
        httpsPort: ports.rootHttps,
        deviceId: EDGE_ID,
        sharedAccessKey: edge.authentication.symmetricKey.primaryKey,
        caFile: rootCaFile,
      },
    },
    "edge",
  );
  await edgeHub.waitFor(/"scope-synced"/);
  const serviceKey = /SharedAccessKey=([^;\s]+)/.exec(
    readFileSync(join(edgeData, "service-connection-string"), "utf8"),
  )[1];
  return {
    root,
    edge: edgeHub,
    relay,
    keys,
    ports,
    edgeCa: readFileSync(join(edgeData, "certs/ca.pem")),
    status: statusReader(ports.edgeHttps, readFileSync(join(edgeData, "certs/ca.pem")), serviceKey),
  };
}

/**
 * GET /edge/status of the edge (its service API, as its owner policy); a connection each
 * time (the server drops idle ones after 5 s, the sampling period). Undefined if it fails.
 */
function statusReader(port, ca, serviceKey) {
  const agent = false;
  const token = createSasToken(
    "127.0.0.1",
    serviceKey,
    Math.floor(Date.now() / 1000) + 86_400,
    "iothubowner",
  );
  const read = () =>
    new Promise((resolve, reject) => {
      const req = https.request(
        { host: "127.0.0.1", port, ca, agent, path: "/edge/status", headers: { authorization: token } },
        (res) => {
          const chunks = [];
          res.on("data", (c) => chunks.push(c));
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString();
            if (res.statusCode !== 200)
              return reject(new Error(`status answered ${res.statusCode}: ${text}`));
            resolve(JSON.parse(text));
          });
          res.on("error", reject);
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error("status: no answer in 10 s")));
      req.on("error", reject);
      req.end();
    });
  return {
    read: () =>
      read().catch((err) => {
        console.log(`  status: ${err.message}`);
      }),
  };
}

/** One connected device: publishes when told, up to WINDOW unacknowledged; reconnects if dropped. */
function device(port, ca, i, key, counters) {
  const clientId = `soak${i}`;
  const expiry = Math.floor(Date.now() / 1000) + 86_400;
  const login = {
    clientId,
    username: `localhost/${clientId}/?api-version=2021-04-12`,
    password: Buffer.from(createSasToken(`localhost/devices/${clientId}`, key, expiry)),
  };
  const d = { socket: undefined, inflight: 0, seq: 0, messageId: 0, closed: false };
  const connect = () =>
    new Promise((resolve) => {
      const socket = tls.connect({ host: "127.0.0.1", port, ca });
      const parser = mqtt.parser({ protocolVersion: 4 });
      parser.on("packet", (p) => {
        if (p.cmd === "connack") {
          if (p.returnCode !== 0) counters.refused++;
          d.socket = socket;
          d.inflight = 0;
          resolve();
        } else if (p.cmd === "puback") {
          d.inflight--;
          counters.acked++;
        }
      });
      socket.on("data", (b) => parser.parse(b));
      socket.on("error", () => undefined);
      socket.on("close", () => {
        resolve();
        if (d.socket === socket) d.socket = undefined;
        if (d.closed) return;
        counters.disconnects++;
        setTimeout(() => void connect(), 1000);
      });
      socket.on("secureConnect", () => socket.write(connectPacket(login)));
    });
  d.ready = connect();
  d.publish = () => {
    if (!d.socket || d.inflight >= WINDOW) return false;
    d.messageId = (d.messageId % 65535) + 1;
    d.inflight++;
    d.socket.write(
      mqtt.generate({
        cmd: "publish",
        topic: `devices/${clientId}/messages/events/seq=${d.seq++}`,
        payload: BODY,
        qos: 1,
        messageId: d.messageId,
        retain: false,
        dup: false,
      }),
    );
    return true;
  };
  d.close = () => {
    d.closed = true;
    d.socket?.destroy();
  };
  return d;
}

function sampleOf(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return {
    rssMB: mb(Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024),
    fds: readdirSync(`/proc/${pid}/fd`).length,
  };
}

const dir = await mkdtemp(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-soak-"));
let site;
try {
  console.log(
    `soak: ${DEVICES} devices, ${RATE} msgs/s (QoS 1, ${BODY.length} B, ${WINDOW} in flight at most each) for ${MINUTES} min; uplink cut for ${CUT_SECS} s at 30 s past every minute`,
  );
  site = await startSite(dir);
  const counters = { acked: 0, published: 0, behind: 0, disconnects: 0, refused: 0 };
  const devices = [];
  for (let i = 0; i < DEVICES; i++) {
    devices.push(device(site.ports.edge, site.edgeCa, i, site.keys[i], counters));
    // Not all handshakes at once: a burst of 1000 TLS handshakes times some out.
    if (i % 50 === 49) await sleep(20);
  }
  await Promise.all(devices.map((d) => d.ready));
  console.log(`${devices.filter((d) => d.socket).length} devices connected`);

  const t0 = performance.now();
  const secs = () => (performance.now() - t0) / 1000;
  const endAt = MINUTES * 60;
  // The load: every tick, as many publishes as the rate owes, round-robin over the devices.
  let next = 0;
  const pacer = setInterval(() => {
    const owed = Math.floor(Math.min(secs(), endAt) * RATE) - counters.published - counters.behind;
    for (let k = 0; k < owed; k++) {
      const d = devices[next];
      next = (next + 1) % devices.length;
      if (d.publish()) counters.published++;
      else counters.behind++;
    }
  }, TICK_MS);
  // The uplink: cut at 30 s past every minute, for CUT_SECS.
  let cuts = 0;
  let cutUntil = -1;
  const cutter = setInterval(() => {
    const s = secs();
    if (cutUntil < 0 && s % 60 >= 30 && s % 60 < 30 + CUT_SECS && Math.floor(s / 60) >= cuts) {
      site.relay.cut();
      cuts++;
      cutUntil = s + CUT_SECS;
    } else if (cutUntil >= 0 && s >= cutUntil) {
      site.relay.restore();
      cutUntil = -1;
    }
  }, 100);

  const samples = [];
  let last = { at: 0, acked: 0, behind: 0 };
  const sample = async () => {
    const at = secs();
    const st = (await site.status.read()) ?? {};
    const s = {
      t: Math.round(at),
      ...sampleOf(site.edge.pid),
      lagP99Ms: st.eventLoopDelayMs?.p99Ms ?? null,
      lagMaxMs: st.eventLoopDelayMs?.maxMs ?? null,
      ackedPerSec: Math.round((counters.acked - last.acked) / (at - last.at)),
      behind: counters.behind - last.behind,
      backlog: st.upstreamQueue?.count ?? null,
      online: st.online ?? null,
      connected: st.connectedClients ?? null,
      rootRssMB: sampleOf(site.root.pid).rssMB,
    };
    last = { at, acked: counters.acked, behind: counters.behind };
    samples.push(s);
    console.log(
      `${String(s.t).padStart(4)} s  rss ${s.rssMB} MB  fds ${s.fds}  lag p99 ${s.lagP99Ms} ms max ${s.lagMaxMs} ms  acked ${s.ackedPerSec}/s  behind ${s.behind}  backlog ${s.backlog}  ${s.online ? "online" : "OFFLINE"}  clients ${s.connected}`,
    );
  };
  while (secs() < endAt) {
    await sleep(Math.max(0, (samples.length + 1) * SAMPLE_SECS - secs()) * 1000);
    await sample();
  }
  clearInterval(pacer);
  clearInterval(cutter);
  site.relay.restore();
  // The backlog drains once the load stops (for DRAIN_SECS at most): what the cuts left is forwarded.
  const drainFrom = secs();
  let backlog = samples.at(-1)?.backlog ?? 0;
  while (backlog > 0 && secs() - drainFrom < DRAIN_SECS) {
    await sleep(1000);
    backlog = (await site.status.read())?.upstreamQueue?.count ?? backlog;
  }
  for (const d of devices) d.close();

  const series = (k) => samples.map((s) => s[k]).filter((v) => typeof v === "number");
  const summary = ["rssMB", "fds", "lagP99Ms", "lagMaxMs", "ackedPerSec", "backlog", "rootRssMB"].map((k) => {
    const v = series(k);
    return { figure: k, first: v[0], last: v.at(-1), max: Math.max(...v), min: Math.min(...v) };
  });
  console.log(
    `\n${Math.round(secs())} s: ${counters.published} published, ${counters.acked} acknowledged, ${counters.behind} turns skipped (device behind), ${cuts} uplink cuts, ${counters.disconnects} device disconnects, backlog ${backlog} at the end`,
  );
  table(summary);
  save("soak", {
    workload: `${DEVICES} MQTT/TLS devices connected throughout, ${RATE} msgs/s in all (QoS 1, ${BODY.length} B, at most ${WINDOW} in flight each) for ${MINUTES} min; uplink (a relay to the root) cut for ${CUT_SECS} s at 30 s past every minute`,
    settings: {
      minutes: MINUTES,
      devices: DEVICES,
      rate: RATE,
      cutSecs: CUT_SECS,
      sampleSecs: SAMPLE_SECS,
      window: WINDOW,
    },
    totals: { ...counters, cuts, backlogAtEnd: backlog },
    summary,
    samples,
  });
} finally {
  await site?.relay.close();
  await site?.edge.stop();
  await site?.root.stop();
  rmSync(dir, { recursive: true, force: true });
}
