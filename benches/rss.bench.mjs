// Where an idle hub's resident memory goes: `bin/edgehub start` (a root hub on the
// defaults: MQTT/TLS, HTTPS, metrics listener; data in a temp dir) and, beside it, a bare
// `node` process and Mosquitto 2.0, each measured from /proc/<pid>/smaps after 3 s and
// after 15 s idle (V8's memory reducer shrinks the heap after start). The hub's RSS is
// split by mapping: the node binary's pages, edgehub's add-on (RocksDB's code), anonymous
// memory (V8 heap, malloc: RocksDB's memtables and caches, TLS contexts), and the rest.
// Results: benches/results/rss.json.
//
//   npm run build:ts && node benches/rss.bench.mjs
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, hubCerts, provisioningHub, startEdgehub, startMosquitto } from "./lib/brokers.mjs";
import { save, table } from "./lib/report.mjs";

const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-rss-"));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mb = (kb) => +(kb / 1024).toFixed(1);

/** RSS of `pid` by kind of mapping, in kB. */
function split(pid) {
  const parts = { total: 0, nodeBinary: 0, addon: 0, anon: 0, libraries: 0 };
  let name = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      name = head[1] ?? "";
      continue;
    }
    if (!line.startsWith("Rss:")) continue;
    const kb = Number(line.split(/\s+/)[1]);
    parts.total += kb;
    if (name.endsWith("/node")) parts.nodeBinary += kb;
    else if (name.endsWith(".node")) parts.addon += kb;
    else if (name === "" || name.startsWith("[heap]") || name.startsWith("[stack")) parts.anon += kb;
    else parts.libraries += kb;
  }
  return parts;
}

async function measure(name, pid) {
  await sleep(3000);
  const early = split(pid);
  await sleep(12_000);
  const idle = split(pid);
  return {
    process: name,
    rssAfter3sMB: mb(early.total),
    rssAfter15sMB: mb(idle.total),
    nodeBinaryMB: mb(idle.nodeBinary),
    addonMB: mb(idle.addon),
    anonMB: mb(idle.anon),
    librariesMB: mb(idle.libraries),
  };
}

try {
  const rows = [];
  const bare = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  rows.push(await measure("node (nothing loaded)", bare.pid));
  bare.kill();
  const dataDir = join(root, "hub");
  const setup = await provisioningHub(dataDir);
  await setup.close();
  const hub = await startEdgehub(dataDir, await freePort(), {
    listen: { https: await freePort() },
    metrics: { port: await freePort() },
  });
  try {
    rows.push(await measure("edgehub (root hub, bin/edgehub)", hub.pid));
  } finally {
    await hub.stop();
  }
  const certs = hubCerts(dataDir);
  const mosquitto = await startMosquitto(mkdtempSync(join(root, "mosq-")), await freePort(), certs);
  try {
    rows.push(await measure("mosquitto", mosquitto.pid));
  } finally {
    await mosquitto.stop();
  }
  table(rows);
  save("rss", {
    workload:
      "idle processes, RSS from /proc/<pid>/smaps 3 s and 15 s after start; edgehub: a root hub on its defaults (MQTT/TLS, HTTPS, metrics) launched by bin/edgehub; the split is the 15 s reading",
    rows,
  });
} finally {
  rmSync(root, { recursive: true, force: true });
}
