// Identity shares on the ingest path: CPU per message the router spends (accept, group,
// store call, settlement) with maxSizeBytesPerIdentity off and on, for 256 B messages from
// 1000 senders, 1000 messages a turn (what MQTT heads hand over under load). The store
// runs without fsync so the figure is the router's and the store call's, not the disk's.
// Off and on alternate (3 rounds each) on the same store; the median is reported.
//
//   npm run build && node benches/shares.bench.mjs      (BENCH_MESSAGES=200000 by default)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MessageStore } from "../dist/index.js";
import { IdentityShares } from "../dist/routing/identity-shares.js";
import { RouteTable } from "../dist/routing/route-table.js";
import { Router } from "../dist/routing/router.js";
import { save, table } from "./lib/report.mjs";

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 200_000);
const PER_TURN = 1000;
const SENDERS = 1000;
const dir = mkdtempSync(join(tmpdir(), "edgehub-shares-"));
const store = await MessageStore.open(dir, { durability: "wal", maxSizeBytes: 2 ** 40 });
const router = new Router(store, new RouteTable({}, "$upstream", () => "edge1", true));
const shares = await IdentityShares.open(store, (q) => q.startsWith("$upstream"), 2 ** 40);
const body = Buffer.alloc(256, 1);
// One id string per sender, as each connection's principal holds it.
const ids = Array.from({ length: SENDERS }, (_, i) => `device-${i}`);

/** CPU microseconds per message for MESSAGES messages, all durable. */
async function run() {
  const start = process.cpuUsage();
  let pending = 0;
  let resolve;
  const all = new Promise((r) => {
    resolve = r;
  });
  const done = (err) => {
    if (err) throw err;
    if (--pending === 0) resolve();
  };
  for (let sent = 0; sent < MESSAGES; ) {
    for (let i = 0; i < PER_TURN; i++, sent++) {
      pending++;
      router.accept(
        {
          deviceId: ids[sent % SENDERS],
          body,
          properties: { seq: String(sent), "$.ct": "application/json" },
        },
        done,
      );
    }
    await new Promise((r) => setImmediate(r));
  }
  await all;
  const used = process.cpuUsage(start);
  // Drained as the forwarder would, so the backlog stays the same size for every round.
  for (const q of (await store.stats()).queues) if (q.count > 0) await store.ack(q.name, q.tail - 1);
  return (used.user + used.system) / MESSAGES;
}

const results = { off: [], on: [] };
await run(); // warm-up
for (let round = 0; round < 3; round++) {
  router.setShares(undefined);
  results.off.push(await run());
  router.setShares(shares);
  results.on.push(await run());
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const off = median(results.off);
const on = median(results.on);
table([
  { shares: "off", cpuMicrosPerMessage: off.toFixed(2) },
  { shares: "on", cpuMicrosPerMessage: on.toFixed(2) },
  { shares: "added", cpuMicrosPerMessage: (on - off).toFixed(2) },
]);
save("shares", {
  messages: MESSAGES,
  perTurn: PER_TURN,
  senders: SENDERS,
  bodyBytes: 256,
  cpuMicrosPerMessage: { off, on },
  rounds: results,
});
await shares.close();
await store.close();
rmSync(dir, { recursive: true, force: true });
