// Renders docs/benchmarks.md from benches/results/*.json, so the table always shows the
// figures of the last run with the commands that produced them.
//
//   node benches/render.mjs
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { fmt } from "./lib/report.mjs";

const file = (name) => new URL(`./results/${name}.json`, import.meta.url);
const load = (name) => JSON.parse(readFileSync(file(name), "utf8"));
/** A result that may not have been produced yet (a benchmark added after the last full run). */
const loadIfRun = (name) => (existsSync(file(name)) ? load(name) : undefined);
const row = (cells) => `| ${cells.join(" | ")} |`;
const tableMd = (head, rows) => [row(head), row(head.map(() => "---")), ...rows.map(row)].join("\n");

const append = load("store-append");
const replay = load("store-replay");
const ack = load("store-ack");
const through = loadIfRun("store-through");
const backlog = load("store-backlog");
const ingest = load("ingest");
const drain = loadIfRun("drain");
const modules = loadIfRun("modules");
const sockets = loadIfRun("sockets");
const soak = loadIfRun("soak");
const shares = loadIfRun("shares");
const rss = loadIfRun("rss");
const amqp = loadIfRun("amqp");
const m = append.machine;

const out = `# Benchmarks

Every figure below comes from one run on the machine named, with its peers measured in the
same run; ratios are edgehub's figure divided by the peer's. Regenerate with:

\`\`\`sh
npm run build
node benches/store.bench.mjs        # append matrix, replay, ack, written+drained -> benches/results/store-*.json
node benches/backlog.bench.mjs      # open time and RSS with a 1M backlog -> store-backlog.json
node benches/ingest.bench.mjs       # MQTT ingest vs Mosquitto and aedes -> ingest.json
node benches/drain.bench.mjs        # outage, then drain to the parent, vs a Mosquitto bridge -> drain.json
node benches/modules.bench.mjs      # module to module through routes, twin patches -> modules.json
node benches/sockets.bench.mjs      # hub RSS per idle connection and unauthenticated socket -> sockets.json
node benches/shares.bench.mjs       # CPU per message of the per-identity share, off vs on -> shares.json
node benches/soak.mjs               # 10 minutes of load, the uplink cut every minute -> soak.json
node benches/rss.bench.mjs          # an idle hub's RSS by mapping, beside node and Mosquitto -> rss.json
node benches/amqp.bench.mjs         # the AMQP head beside the MQTT head, same hub and load -> amqp.json
node benches/render.mjs             # this page
\`\`\`

Machine: ${m.cpus} × ${m.cpu}, ${m.memGiB} GiB, ${m.platform}, Node ${m.node}; run of ${append.date.slice(0, 10)}.
Disk: the machine's virtual disk (fdatasync ≈ 0.2 ms).

Peers:
- **classic-level** 3.0 (LevelDB for Node), \`sync: true\`, one \`batch()\` per append call, keys
  \`queue!offset\`;
- **raw-file**: length-prefixed records appended to one file, one \`writev\` + \`fdatasync\`
  per group of waiting callers — the physical reference, with no index, no TTL, no reads.

## Durable append (msgs/s)

${append.workload}; all callers append to one queue, as devices do to \`$upstream\`.

${tableMd(
  ["workload", "edgehub", "classic-level", "raw-file", "× classic-level", "× raw-file"],
  append.rows.map((r) => [
    r.workload,
    fmt(r.edgehubMsgsPerSec),
    fmt(r.levelMsgsPerSec),
    fmt(r.rawMsgsPerSec),
    r.vsLevel,
    r.vsRaw,
  ]),
)}

## Replay

${replay.workload}.

${tableMd(
  ["peer", "msgs/s"],
  replay.rows.map((r) => [r.peer, fmt(r.msgsPerSec)]),
)}

## Ack

${ack.workload}; classic-level deletes the key with \`sync: true\`.

${tableMd(
  ["peer", "acks/s"],
  ack.rows.map((r) => [r.peer, fmt(r.acksPerSec)]),
)}

## Written and drained at once

${
  through
    ? `${through.workload}; classic-level puts and deletes in one batch with \`sync: true\`, the raw file appends the messages and an ack record under one group-committed fdatasync.

${tableMd(
  ["peer", "msgs/s"],
  through.rows.map((r) => [r.peer, fmt(r.msgsPerSec)]),
)}

An ack commits the writer's batch ahead of itself only when the record it stops at may be
one that batch appended; before, it did so whenever its queue had been appended to in the
batch, which split this workload's group commits: 39.8k msgs/s on the same machine before
the change (classic-level 41.8k, raw file 140.2k in that run).`
    : "Not run yet: `node benches/store.bench.mjs through`."
}

## Backlog: open time and memory

${backlog.workload}.

${tableMd(
  ["peer", "open+close empty (ms)", `open+close backlog (ms)`, "backlog / empty"],
  backlog.open.map((r) => [r.peer, r.emptyMs, r.backlogMs, r.ratio]),
)}

${tableMd(
  ["peer", "RSS after open (MB)", "peak RSS appending (MB)", "appended msgs/s"],
  backlog.rss.map((r) => [r.peer, r.openedRssMB, r.peakRssMB, fmt(r.appendedPerSec)]),
)}

## MQTT ingest

${ingest.workload}. Every broker runs in its own process on the same 2 cores as the load
generator; CPU-seconds are the broker process's own. Two reference peers run on the same
generator: the null sink (a Node TLS server that acks at once: the generator's ceiling in
Node; Mosquitto, in C, goes past it) and the fsync floor (the same server, appending each
payload to a file and acking after a group-committed fdatasync: the least a Node broker
that acks only once durable can do on this disk).

How to read it. Mosquitto and aedes acknowledge from memory; edgehub acknowledges after
the group commit's fsync (\`durability: "fsync"\`, the default) or, as \`edgehub-wal\`, after
the WAL write without fsync (\`durability: "wal"\`: a killed hub keeps it, a power loss may
not; IoT Edge's own default). With one message in flight each client waits a disk round per
message under fsync, so every fsync-bound broker trails Mosquitto there; the fsync floor
shows the least a Node broker pays for it. × Mosquitto is edgehub's CPU-seconds per million
divided by Mosquitto's in the same run, for the same clients and window.

${tableMd(
  [
    "clients",
    "in flight",
    "broker",
    "msgs/s",
    "PUBACK p50 (ms)",
    "PUBACK p99 (ms)",
    "CPU-s per 1M msgs",
    "× Mosquitto CPU",
  ],
  ingest.rows.map((r) => {
    const peer = ingest.rows.find(
      (x) => x.broker === "mosquitto" && x.clients === r.clients && (x.inFlight ?? 1) === (r.inFlight ?? 1),
    );
    const ratio =
      r.broker.startsWith("edgehub") && peer ? (r.cpuSecPerMillion / peer.cpuSecPerMillion).toFixed(2) : "";
    return [
      r.clients,
      r.inFlight ?? 1,
      r.broker,
      fmt(r.msgsPerSec),
      r.p50Ms,
      r.p99Ms,
      r.cpuSecPerMillion,
      ratio,
    ];
  }),
)}
${threadTable(ingest)}
What the figures do not show: Mosquitto and aedes acknowledge from memory (Mosquitto's
queue is snapshotted every \`autosave_interval\`; aedes keeps it in memory) and lose what
they acked when killed; edgehub acknowledges after the group commit's fsync
(\`test/store/crash.test.ts\` kills it repeatedly and finds every acknowledged message, under
both durabilities; \`test/hub/sigkill.test.ts\` kills the hub process mid-ingest).

## Footprint: CPU per message and memory

\`npm run bench:quick\` runs ingest, drain and module to module with small counts (about three
minutes) and prints edgehub's CPU-seconds per million and RSS as ratios to Mosquitto measured
in the same run, beside issue 13's aims; its figures go to a temporary directory, not here.

Where the CPU goes (profiles of the hub under \`benches/ingest.bench.mjs\` with
\`EDGEHUB_NODE_ARGS="--cpu-prof"\`, \`perf record\` of a store appending, and the per-thread
table above):
- **Warm-up.** Each row starts a fresh broker; every broker now carries the same load for
  2 s unmeasured first. Without it edgehub's JIT compiled its hot path inside the measured
  window: about a second of CPU charged to a few thousand messages at one in flight (227 →
  140 CPU-s per million in one quick run of 2026-12-02).
- **One in flight.** Under \`fsync\` each message is a round through the store's writer
  thread: event loop → writer (a futex wake) → fdatasync → event loop, then the PUBACK's TLS
  record. Under \`durability: "wal"\` a write that finds the writer idle now runs on the event
  loop itself (no hand-off; a write RocksDB would stall is left to the thread), and every
  store answers through one completion channel instead of napi-rs's threadsafe function per
  promise. A store appending one 256 B message at a time (\`wal\`, one caller) went from 39.4
  to 17.0 µs of CPU per append; the hub's \`edgehub-wal\` at 10 × 1 from 52.2 to 38.4 CPU-s per
  million in one quick run (2026-12-02). What remains at one in flight is the event loop's
  per-message work, flat in \`perf\` (no item above 3%): the PUBACK's write (\`writeBuffer\`,
  about a third of the loop's busy time: a TLS record and a loopback send, whose kernel
  side also delivers to the client), the RocksDB write with its WAL \`write\` (about a fifth),
  malloc, and V8's megamorphic property loads. Mosquitto acknowledges from memory in the
  thread that read the PUBLISH; under \`fsync\` the ratio at one in flight is also the price
  of acknowledging only what is stored (the \`fsync-floor\` rows). A killed hub keeps every
  acknowledged message under both durabilities (\`test/hub/sigkill.test.ts\`); under \`wal\`
  a power loss may not (IoT Edge's own default).
- **Sixteen in flight.** Commits hold many messages, and the event loop is most of the CPU:
  the PUBACK writes (\`writeBuffer\`: one TLS record per client per loop turn, about a fifth
  of busy time), under \`wal\` the RocksDB write itself (about a sixth, now on the loop), the
  garbage collector (per-message objects: the packet's topic and payload views, the property
  bag, the router's record), then the store's JavaScript side (encoding the batch), the
  router and the MQTT reader. RocksDB's own threads (flushes, compactions) are a few percent.
  Under \`wal\` edgehub's CPU per message at 16 in flight is now within a tenth of the null sink's, or below it
  (a Node TLS server that parses and acks, storing nothing): what separates it from
  Mosquitto there is Node's socket and TLS path, which any Node broker pays.
- **Draining.** The edge reads its queue in batches and publishes each message as its own
  MQTT PUBLISH on the sender's link (as IoT Hub requires): the garbage collector (about a
  sixth of busy time), TLS writes, then per-message JavaScript. The parent's PUBACKs were
  decoded by mqtt-packet (about 5% of the edge's busy time, half of it its debug logging);
  the packet reader now decodes PUBACK in place, as it does PUBLISH.

${rss ? rssSection(rss) : "Not run yet: `npm run build:ts && node benches/rss.bench.mjs`."}

## AMQP beside MQTT

${amqp ? amqpSection(amqp) : "Not run yet: `npm run build:ts && node benches/amqp.bench.mjs`."}

## Module to module

${
  modules
    ? `${modules.workload}. Run of ${modules.date.slice(0, 10)}. Aim: 20k msgs/s or more module to module.

${tableMd(
  [
    "broker",
    "msgs/s (patches/s for the twin row)",
    "publish to arrival p50 (ms)",
    "p99 (ms)",
    "CPU-s per 1M msgs",
  ],
  modules.rows.map((r) => [
    r.broker,
    fmt(r.msgsPerSec),
    r.p50Ms ?? "—",
    r.p99Ms ?? "—",
    r.cpuSecPerMillion ?? "—",
  ]),
)}

Module to module is bound by the sender's window over the durable round trip (64 in flight
over a few ms: the input queue's fsync before the PUBACK, then the delivery), not by the
hub's CPU: a CPU profile of the hub over this bench finds it idle about half the time. Runs
on this machine range from 21k to 27k msgs/s when it is otherwise idle (the run above shared
its two cores with other work). The publish-to-arrival latency is the check that delivery
keeps up with a steady sender: a delivery that waited for 16 free places before reading again
let the receiver's input queue grow, p50 about 1 s instead of 5 ms (fixed 2026-12-02; the
quick check, \`npm run bench:quick\`, found it). Reported patches of one client that are in
flight together share one read and one durable write (twin and pending log in one batch),
each still its own version, in order; before that batching they were one write each
(2.5k patches/s in the same bench).`
    : "Not run yet: `npm run build:ts && node benches/modules.bench.mjs`."
}

## Memory per socket

${
  sockets
    ? `${sockets.workload}. Run of ${sockets.date.slice(0, 10)}: \`npm run build:ts && node benches/sockets.bench.mjs\`.

${tableMd(
  ["socket", "sockets", "RSS before (MB)", "RSS with them (MB)", "per socket (KB)"],
  sockets.rows.map((r) => [r.kind, r.sockets, r.rssBeforeMB, r.rssWithMB, r.perSocketKB]),
)}

These size the \`limits\` defaults (ts/config/limits.ts, docs/hub.md): \`maxConnections\` × the
largest figure must stay well under a small board's budget for the hub (1000 × ~55 KB ≈ 55 MB
over an ~80 MB idle hub), and the handshake, CONNECT and header deadlines (10 s) keep
unauthenticated sockets from piling up; Node's own deadlines are 120 s for the TLS handshake
and 60 s for the headers (checked every 30 s). The deltas include the V8 heap growing in
steps: two runs agree within ~3 KB per socket.`
    : "Not run yet: `npm run build:ts && node benches/sockets.bench.mjs`."
}

## Drain after an outage

${drain ? drainSection(drain) : "Not run yet: `npm run build:ts && node benches/drain.bench.mjs` (a few minutes; the machine should be otherwise idle)."}

## Identity shares on the ingest path

${shares ? sharesSection(shares) : "Not run yet: `npm run build:ts && node benches/shares.bench.mjs`."}

## Soak

${soak ? soakSection(soak) : "Not run yet (figures to come from the 10-minute run): `npm run build:ts && node benches/soak.mjs --minutes 10` (1000 devices, 5k msgs/s, the uplink cut every minute; the machine should be otherwise idle)."}
`;

function sharesSection(d) {
  const us = (v) => v.toFixed(2);
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  return `CPU per message of the router and the store call (no fsync, so the disk does not hide it)
for ${d.bodyBytes} B messages from ${d.senders} senders, ${d.perTurn} a turn, ${d.messages} a round, with
\`maxSizeBytesPerIdentity\` off and on, alternating on one store (${d.rounds.off.length} rounds each). Run of
${d.date.slice(0, 10)}: \`npm run build:ts && node benches/shares.bench.mjs\` (\`BENCH_MESSAGES\`).

${tableMd(
  ["shares", "CPU µs/msg (median)", "rounds"],
  [
    ["off", us(med(d.rounds.off)), d.rounds.off.map(us).join(", ")],
    ["on", us(med(d.rounds.on)), d.rounds.on.map(us).join(", ")],
  ],
)}

Where it goes: the record size of each message (its property block is measured once more
than the store does), one map lookup of the sender, and one update per stored copy; the
save every second writes one KV entry per sender whose bytes changed.`;
}

function soakSection(d) {
  const mm = d.machine;
  // One row a minute: the last sample of each minute (and the first sample).
  const rows = d.samples.filter(
    (s, i, all) => i === 0 || Math.floor(s.t / 60) !== Math.floor((all[i + 1]?.t ?? Infinity) / 60),
  );
  return `${d.workload}. Run of ${d.date.slice(0, 10)} (${mm.cpus} × ${mm.cpu}, Node ${mm.node}), with
\`npm run build:ts && node benches/soak.mjs --minutes ${d.settings.minutes}\`. The edge hub's figures, sampled every
${d.settings.sampleSecs} s: RSS, open descriptors (/proc/<pid>/fd), the event loop's delay (its status, over the
hub's last 5 s), messages acknowledged per second, and its backlog (\`$upstream\`). Aim: flat — RSS,
delay and descriptors at the end as after the first minute. ${d.totals.acked} acknowledged in all,
${d.totals.behind} turns skipped (a device with ${d.settings.window} unacknowledged), ${d.totals.cuts} uplink cuts, ${d.totals.disconnects} device
disconnects, backlog ${d.totals.backlogAtEnd} after the drain.

${tableMd(
  ["figure", "first", "last", "min", "max"],
  d.summary.map((r) => [r.figure, r.first, r.last, r.min, r.max]),
)}

What the run of 2026-12-01 showed: descriptors flat (about 2040 online: the 1000 devices and
the edge's 1000 links to its parent, one per identity; about 1036 while cut off); RSS rising
from 232 MB to about 300 MB over the first five minutes, then between 300 and 320 MB (the
launcher caps V8's old space at 128 MB; the rest is TLS state of 2000 sockets, RocksDB's
memtables and malloc arenas); the event loop's delay p99 mostly 20–500 ms, up to 2 s in the
seconds after the uplink returns, when 1000 links log in again and the backlog drains
beside the live load. Early cuts (about 25k messages) drained in 20–40 s; over the last
minutes the drain had little headroom above the 5k msgs/s ingest on 2 shared cores (root,
edge and load generator on one machine), so the last cuts' backlogs carried over (136k at
most) and drained once the load stopped (backlog 0 at the end). The soak measures
resources, not delivery: the root keeps events for a minute only; the fault campaigns
(\`npm run test:campaigns\`) check that every acknowledged message arrives.

${tableMd(
  ["t (s)", "RSS (MB)", "fds", "delay p99 (ms)", "delay max (ms)", "acked/s", "backlog", "online"],
  rows.map((s) => [
    s.t,
    s.rssMB,
    s.fds,
    s.lagP99Ms ?? "—",
    s.lagMaxMs ?? "—",
    s.ackedPerSec,
    s.backlog,
    s.online ? "yes" : "no",
  ]),
)}`;
}

function amqpSection(d) {
  return `${d.workload}. Run of ${d.date.slice(0, 10)}: \`npm run build:ts && node benches/amqp.bench.mjs\`.

${tableMd(
  ["clients", "in flight", "protocol", "messages", "msgs/s", "CPU-s per 1M msgs"],
  d.rows.map((r) => [r.clients, r.inFlight, r.protocol, r.messages, fmt(r.msgsPerSec), r.cpuSecPerMillion]),
)}

Both heads store the same way and answer only after the commit, so the difference is the
protocol's own work in JavaScript: AMQP costs about three times MQTT's CPU per message here.

Profiled (2026-12-02, \`EDGEHUB_NODE_ARGS="--cpu-prof" node benches/amqp.bench.mjs\`): rhea
already settles one turn's deliveries of a link in disposition ranges, but it writes every
frame with its own \`socket.write\`: the dispositions, then the flow giving the credit back,
each a TLS record and a write. The socket's \`writeBuffer\` was a quarter of the hub's busy
time over the run (MQTT's PUBACK writes included), about half of it rhea's frames. The AMQP head now corks the socket at the first write of a turn
and uncorks it after (\`ts/amqp/write-batch.ts\`): one write per turn, as the MQTT head's
PUBACKs. Runs alternating without and with it on the same build, this machine shared with
other work (CPU-s per 1M; the MQTT rows of the same runs as the control):

| run | 10 × 1 mqtt | 10 × 1 amqp | 10 × 1 amqp msgs/s | 100 × 16 mqtt | 100 × 16 amqp |
| --- | --- | --- | --- | --- | --- |
| without | 83 | 164.1 | 3.0k | 14.7 | 50.2 |
| with | 86.3 | 150.6 | 4.9k | 11.8 | 43.7 |
| without | 89.8 | 176.4 | 3.6k | 15.9 | 49.7 |
| with | 87.9 | 154.6 | 5.5k | 13.6 | 44.1 |

With one message in flight (a disposition and a flow per message) AMQP's CPU per message
falls about 10% against the control and its rate rises by half; at 16 in flight AMQP's
figure falls about 12%, but the control moved about as much, so that part is not
established. What is left is rhea's decoding and encoding of described types (the
transfer, the message's sections, five closures per delivery in its \`Incoming.on_transfer\`),
where the MQTT head reads a PUBLISH with a few byte reads and writes a 4-byte PUBACK.`;
}

function rssSection(d) {
  return `Memory of an idle process (\`node benches/rss.bench.mjs\`, run of ${d.date.slice(0, 10)}): ${d.workload}.

${tableMd(
  [
    "process",
    "RSS after 3 s (MB)",
    "after 15 s (MB)",
    "node binary (MB)",
    "edgehub add-on (MB)",
    "anonymous (MB)",
    "libraries (MB)",
  ],
  d.rows.map((r) => [
    r.process,
    r.rssAfter3sMB,
    r.rssAfter15sMB,
    r.nodeBinaryMB,
    r.addonMB,
    r.anonMB,
    r.librariesMB,
  ]),
)}

Node itself, with nothing loaded, is most of the aim of 57 MB: its binary's pages alone are
about 30 MB. Where the rest goes (the idle hub's pages read from \`/proc/<pid>/pagemap\` and
mapped to \`nm\`'s symbols of the node binary, and a heap snapshot; 2026-12-02):
- **The node binary, about 9 MB over bare Node.** About 3 MB of V8's optimising compiler's
  code (any function that turns hot at start, as it will under load); about 5 MB of read-only
  data: the dynamic symbol tables the loader searches to bind the add-on to Node's
  \`napi_*\` functions (about 1 MB), OpenSSL's and Node's crypto tables (about 1.4 MB), and
  the sources and code cache of Node's built-in modules the hub needs (TLS, HTTP, streams,
  crypto; about 2 MB). A page touched brings its neighbours with it (the kernel's fault-around
  maps 64 KB at a time), so scattered reads cost more than their bytes.
- **RocksDB's code, about 8 MB** of the add-on's 9 MB of text: its static initialisers and
  \`DB::Open\` run code all over the library.
- **The V8 heap, about 9 MB** (bare Node: about 2): module sources kept as strings (about
  2.4 MB; valibot's bundle alone is 0.4 MB), compiled code and bytecode (about 2.4 MB), and
  the objects of the hub's parts; malloc adds about 5 MB (RocksDB, TLS contexts).

Cut so far: the X.509 library is loaded only to issue certificates (about 10 MB; it was
loaded on every start with the development CA), \`ws\` on the first WebSocket upgrade (about
4 MB), rhea and the AMQP head on the first AMQP connection, prom-client replaced by a writer
of Prometheus' text format (about 3.5 MB), \`edgehub start\` loads no other command's module,
and the add-on's loader no longer builds a process report to tell glibc from musl (about
1 MB). What is left is mostly Node's and RocksDB's own code.`;
}

/** Where edgehub's CPU goes by thread, per million messages (rows that recorded it). */
function threadTable(d) {
  const rows = d.rows.filter((r) => r.broker.startsWith("edgehub") && r.threadCpuSecPerMillion);
  if (rows.length === 0) return "";
  const names = [...new Set(rows.flatMap((r) => Object.keys(r.threadCpuSecPerMillion)))].sort((a, b) =>
    a === "node" ? -1 : b === "node" ? 1 : a.localeCompare(b),
  );
  return `
edgehub's CPU-seconds per million messages by thread (from \`/proc/<pid>/task\`): \`node\` is
the event loop (TLS, MQTT, routing, the store's JavaScript side), \`edgehub-store-w\` the
store's writer (group commit: WAL write, fsync, state), \`rocksdb:*\` RocksDB's flushes and
compactions; other threads (V8's GC helpers, libuv's pool) as named.

${tableMd(
  ["clients", "in flight", "broker", ...names],
  rows.map((r) => [
    r.clients,
    r.inFlight ?? 1,
    r.broker,
    ...names.map((n) => r.threadCpuSecPerMillion[n] ?? 0),
  ]),
)}
`;
}

function drainSection(d) {
  const mm = d.machine;
  const ms = (v) => (v === null ? "—" : v);
  // Acknowledged and not at the parent when the drain ended; what the edge still held then.
  const missing = (r) => (r.leftAtBroker ? `${r.missing} (${r.leftAtBroker} still queued)` : r.missing);
  return `${d.workload}. Run of ${d.date.slice(0, 10)} on ${mm.cpus} × ${mm.cpu}; reproduce with
\`npm run build:ts && node benches/drain.bench.mjs\` (\`BENCH_MESSAGES\`, \`BENCH_KILL_MESSAGES\`).

- **edgehub**: ${d.settings.edgehub}; children log in to the edge with tokens for the root.${d.settings.edgehubWal ? `\n- **edgehub-wal**: ${d.settings.edgehubWal}.` : ""}
  Arrivals are counted at the root (its \`$events\` queue), then each child's sequence
  numbers are checked in the root's store.
- **mosquitto**: ${d.settings.mosquitto}. Arrivals are counted by a subscriber on the
  remote with a persistent session (QoS 1), subscribed before the outage.

Link up: from the parent listening again to the edge's own link (the bridge) being back,
which is the reconnect backoff (the edge's log; the bridge's notification on the parent).
Resume: from the parent listening to the first message arriving there. Drained: from the parent
listening to the last of the ${d.settings.messages} arriving; drain msgs/s counts from
the first arrival to the last. RSS is the edge's (the local Mosquitto's) resident memory,
sampled every 200 ms: before the ingest, its peak during the ingest, and its peak while
draining. CPU-s: what the broker's and the parent's processes used from the parent's start
to the last arrival (the root stores what it receives durably; the remote Mosquitto hands
it to the subscriber from memory). Aims: drain at 50k msgs/s or more, resume within 1 s, under 150 MB with the
1M backlog, no acknowledged message lost.

${tableMd(
  [
    "broker",
    "messages",
    "ingest msgs/s",
    "RSS before (MB)",
    "peak RSS ingest (MB)",
    "link up (ms)",
    "resume (ms)",
    "drained (ms)",
    "drain msgs/s",
    "peak RSS drain (MB)",
    "CPU-s draining (broker / parent)",
    "duplicates",
    "acknowledged missing",
  ],
  d.rows.map((r) => [
    r.broker,
    r.messages,
    fmt(r.ingestMsgsPerSec),
    r.restRssMB,
    r.ingestPeakRssMB,
    ms(r.linkUpMs ?? null),
    ms(r.resumeMs),
    ms(r.drainedMs),
    r.drainMsgsPerSec === null ? "—" : fmt(r.drainMsgsPerSec),
    r.drainPeakRssMB,
    `${ms(r.brokerCpuSec)} / ${ms(r.parentCpuSec)}`,
    r.duplicates,
    missing(r),
  ]),
)}

SIGKILL mid-outage: ${d.settings.killMessages} messages from the same clients; the broker
(the edge hub, the local Mosquitto) is SIGKILLed once half are acknowledged, started again
on its data while the parent is still down, then the parent starts. Mosquitto acknowledges
from memory and snapshots its queue every \`autosave_interval\` (30 minutes by default), so
what it acknowledged since the last snapshot is gone; edgehub acknowledges after fsync
(edgehub-wal after the WAL write, which a killed process keeps: only a power loss can take it).

${tableMd(
  ["broker", "acknowledged before the kill", "of those at the parent", "lost"],
  d.kill.map((r) => [r.broker, r.acked, r.deliveredOfAcked, missing(r)]),
)}`;
}

writeFileSync(new URL("../docs/benchmarks.md", import.meta.url), out);
console.log("wrote docs/benchmarks.md");
