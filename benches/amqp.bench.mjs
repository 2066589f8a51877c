// The AMQP head beside the MQTT head: the same hub process (bin/edgehub, acks after fsync),
// the same devices and load — N TLS clients each sending a fixed number of 256 B messages
// with `window` unacknowledged (MQTT: QoS 1 PUBLISH answered by PUBACK; AMQP: a transfer
// settled `accepted`), one protocol after the other — and the hub's msgs/s and CPU-seconds
// per million messages for each. Results: benches/results/amqp.json.
//
//   npm run build:ts && node benches/amqp.bench.mjs      (BENCH_MESSAGES=200000 per run)
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSasToken } from "../dist/auth/sas.js";
import { openAmqpLoad } from "./lib/amqp-load.mjs";
import { cpuSeconds, freePort, provisioningHub, startEdgehub } from "./lib/brokers.mjs";
import { openLoad } from "./lib/mqtt-load.mjs";
import { fmt, save, table } from "./lib/report.mjs";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000);
const SHAPES = [
  { clients: 10, window: 1 },
  { clients: 100, window: 16 },
];
const BODY = Buffer.alloc(256, 0x61);
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-amqp-"));

try {
  const dataDir = join(root, "hub");
  const max = Math.max(...SHAPES.map((s) => s.clients));
  const setup = await provisioningHub(dataDir);
  const keys = [];
  for (let i = 0; i < max; i++)
    keys.push(
      (await setup.registry.createDevice({ deviceId: `dev${i}` })).authentication.symmetricKey.primaryKey,
    );
  await setup.close();
  const ca = readFileSync(join(dataDir, "certs/ca.pem"));
  const expiry = Math.floor(Date.now() / 1000) + 3600;
  const token = (i) => createSasToken(`localhost/devices/dev${i}`, keys[i], expiry);
  const amqps = await freePort();
  const hub = await startEdgehub(dataDir, await freePort(), { listen: { amqps }, metrics: false });
  const rows = [];
  try {
    for (const { clients, window } of SHAPES) {
      const per = Math.ceil(MESSAGES / clients);
      for (const protocol of ["mqtt", "amqp"]) {
        const load =
          protocol === "mqtt"
            ? await openLoad({
                port: hub.port,
                ca,
                window,
                body: BODY,
                clients: Array.from({ length: clients }, (_, i) => ({
                  clientId: `dev${i}`,
                  username: `localhost/dev${i}/?api-version=2021-04-12`,
                  password: Buffer.from(token(i)),
                  count: per,
                  topicOf: () => `devices/dev${i}/messages/events/`,
                })),
              })
            : await openAmqpLoad({
                port: amqps,
                ca,
                window,
                body: BODY,
                clients: Array.from({ length: clients }, (_, i) => ({
                  deviceId: `dev${i}`,
                  token: token(i),
                  count: per,
                })),
              });
        const cpu0 = cpuSeconds(hub.pid);
        const r = await load.run();
        const cpu = cpuSeconds(hub.pid) - cpu0;
        const row = {
          clients,
          inFlight: window,
          protocol,
          messages: r.ackedTotal,
          msgsPerSec: Math.round(r.ackedTotal / (r.elapsedMs / 1000)),
          cpuSecPerMillion: +((cpu / r.ackedTotal) * 1e6).toFixed(1),
        };
        rows.push(row);
        console.log(
          `${clients} clients x ${window} in flight over ${protocol}: ${fmt(row.msgsPerSec)} msgs/s, ${row.cpuSecPerMillion} CPU-s/M`,
        );
        // Connections of this round go before the next opens.
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  } finally {
    await hub.stop();
  }
  table(rows);
  save("amqp", {
    workload: `one edgehub process (acks after fsync), N TLS clients each sending ${fmt(MESSAGES)} / N messages of ${BODY.length} B with 1 or 16 unacknowledged, over MQTT (QoS 1) and then over AMQP (settled accepted once stored)`,
    rows,
  });
} finally {
  rmSync(root, { recursive: true, force: true });
}
