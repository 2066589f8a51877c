// Store benchmarks: durable append (body size x messages per call x concurrent callers),
// replay, ack, and a queue written and drained at once, for edgehub beside classic-level (sync) and a raw fdatasync'd file,
// all in this run. Results: benches/results/store-*.json; table: docs/benchmarks.md.
//
//   npm run bench            (builds first; or: node benches/store.bench.mjs after a build)
//   BENCH_QUICK=1 ...        shorter runs for a smoke check
//   BENCH_FILTER=regex ...   only append workloads matching (e.g. "x 32 callers")
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import b from "benny";
import { edgehubPeer, levelPeer, PEERS, rawPeer } from "./lib/peers.mjs";
import { fmt, save, table } from "./lib/report.mjs";

const QUICK = process.env.BENCH_QUICK === "1";
const FILTER = process.env.BENCH_FILTER ? new RegExp(process.env.BENCH_FILTER) : null;
const caseOptions = QUICK ? { minSamples: 2, maxTime: 0.3 } : { minSamples: 5, maxTime: 1.5 };
const root = mkdtempSync(join(process.env.BENCH_DIR ?? tmpdir(), "edgehub-bench-"));
const fresh = (name) => mkdtempSync(join(root, `${name}-`));

/** Runs one benny suite of `cases` ({ name, fn }) and returns ops/s by case name. */
async function suite(title, cases) {
  const summary = await b.suite(
    title,
    ...cases.map((c) => b.add(c.name, c.fn)),
    b.configure({ cases: caseOptions }),
    b.cycle(),
  );
  return Object.fromEntries(
    summary.results.map((r) => [r.name, { ops: 1 / r.details.mean, margin: r.margin, samples: r.samples }]),
  );
}

async function appendMatrix() {
  const rows = [];
  for (const size of [256, 4096]) {
    for (const perCall of [1, 100, 1000]) {
      for (const callers of [1, 32]) {
        if (QUICK && perCall === 1000 && size === 4096) continue;
        const workload = `${size} B x ${perCall}/call x ${callers} callers`;
        if (FILTER && !FILTER.test(workload)) continue;
        const bodies = Array.from({ length: perCall }, () => randomBytes(size));
        const dirs = PEERS.map((make) => fresh(make.name));
        const peers = await Promise.all(PEERS.map((make, i) => make(dirs[i])));
        const res = await suite(
          `durable append: ${workload}`,
          peers.map((p) => ({
            name: p.name,
            fn: () => Promise.all(Array.from({ length: callers }, () => p.append("q", bodies))),
          })),
        );
        await Promise.all(peers.map((p) => p.close()));
        for (const d of dirs) rmSync(d, { recursive: true, force: true });
        const rate = (n) => res[n].ops * perCall * callers;
        rows.push({
          workload,
          size,
          perCall,
          callers,
          edgehubMsgsPerSec: Math.round(rate("edgehub")),
          levelMsgsPerSec: Math.round(rate("classic-level")),
          rawMsgsPerSec: Math.round(rate("raw-file")),
          vsLevel: +(rate("edgehub") / rate("classic-level")).toFixed(2),
          vsRaw: +(rate("edgehub") / rate("raw-file")).toFixed(2),
        });
      }
    }
  }
  console.log("\ndurable append, msgs/s (ratios: edgehub / peer)");
  table(
    rows.map((r) => ({
      workload: r.workload,
      edgehub: fmt(r.edgehubMsgsPerSec),
      "classic-level": fmt(r.levelMsgsPerSec),
      "raw-file": fmt(r.rawMsgsPerSec),
      "x level": r.vsLevel,
      "x raw": r.vsRaw,
    })),
  );
  save("store-append", { workload: "durable append (fsync per group commit)", rows });
}

async function replay() {
  const n = QUICK ? 100_000 : 500_000;
  const body = randomBytes(256);
  const dir = fresh("replay-eh");
  const fill = await edgehubPeer(dir, { durability: "wal" });
  for (let i = 0; i < n; i += 1000) await fill.append("q", Array(1000).fill(body));
  await fill.close();
  const eh = await edgehubPeer(dir);
  const lv = await levelPeer(fresh("replay-lv"), { sync: false });
  for (let i = 0; i < n; i += 1000) await lv.append("q", Array(1000).fill(body));
  const res = await suite(`replay ${n} x 256 B in reads of 1000`, [
    {
      name: "edgehub",
      fn: async () => {
        let got = 0;
        for (let from = 0; ; ) {
          const batch = await eh.store.read("q", { from, limit: 1000 });
          if (batch.length === 0) break;
          got += batch.length;
          from = (batch.at(-1)?.offset ?? 0) + 1;
        }
        if (got !== n) throw new Error(`replayed ${got} of ${n}`);
      },
    },
    {
      name: "classic-level",
      fn: async () => {
        let got = 0;
        const it = lv.db.iterator({ gte: "q!", lt: "q~" });
        for (;;) {
          const entries = await it.nextv(1000);
          if (entries.length === 0) break;
          got += entries.length;
        }
        await it.close();
        if (got !== n) throw new Error(`replayed ${got} of ${n}`);
      },
    },
  ]);
  await eh.close();
  await lv.close();
  const rows = Object.entries(res).map(([peer, r]) => ({ peer, msgsPerSec: Math.round(r.ops * n) }));
  console.log(`\nreplay of ${n} x 256 B, msgs/s`);
  table(rows.map((r) => ({ peer: r.peer, "msgs/s": fmt(r.msgsPerSec) })));
  save("store-replay", {
    workload: `replay ${n} x 256 B, reads of 1000, bodies and properties decoded`,
    rows,
  });
}

async function acks() {
  const queues = 32;
  const perQueue = QUICK ? 5_000 : 40_000;
  const dir = fresh("ack-eh");
  const fill = await edgehubPeer(dir, { durability: "wal" });
  const body = randomBytes(32);
  for (let q = 0; q < queues; q++) {
    for (let i = 0; i < perQueue; i += 1000) await fill.append(`q${q}`, Array(1000).fill(body));
  }
  await fill.close();
  const eh = await edgehubPeer(dir);
  const lv = await levelPeer(fresh("ack-lv"), { sync: false });
  for (let q = 0; q < queues; q++) {
    for (let i = 0; i < perQueue; i += 1000) await lv.append(`q${q}`, Array(1000).fill(body));
  }
  const next = { edgehub: 0, level: 0 };
  const res = await suite(`ack 1 message per call on ${queues} queues concurrently`, [
    {
      name: "edgehub",
      fn: async () => {
        const o = next.edgehub++;
        if (o >= perQueue) throw new Error("ack bench ran out of messages");
        await Promise.all(Array.from({ length: queues }, (_, q) => eh.store.ack(`q${q}`, o)));
      },
    },
    {
      name: "classic-level",
      fn: async () => {
        const o = next.level++;
        if (o >= perQueue) throw new Error("ack bench ran out of messages");
        await Promise.all(
          Array.from({ length: queues }, (_, q) => lv.db.del(lv.key(`q${q}`, o), { sync: true })),
        );
      },
    },
  ]);
  await eh.close();
  await lv.close();
  const rows = Object.entries(res).map(([peer, r]) => ({ peer, acksPerSec: Math.round(r.ops * queues) }));
  console.log("\ndurable acks/s (32 queues, 1 message per ack; classic-level: del with sync)");
  table(rows.map((r) => ({ peer: r.peer, "acks/s": fmt(r.acksPerSec) })));
  save("store-ack", { workload: `durable ack of 1 message per call, ${queues} queues concurrently`, rows });
}

/**
 * A queue written and drained at once, as a module input or `$upstream` while online: each
 * call appends 16 messages and acknowledges the 16 of the call before, on 8 queues at once.
 * classic-level puts and deletes in one synced batch; the raw file appends the messages and
 * an ack record under one group-committed fdatasync.
 */
async function through() {
  const queues = 8;
  const per = 16;
  const body = randomBytes(256);
  const eh = await edgehubPeer(fresh("through-eh"));
  const lv = await levelPeer(fresh("through-lv"));
  const raw = await rawPeer(fresh("through-raw"));
  const tails = { edgehub: new Array(queues).fill(0), level: new Array(queues).fill(0) };
  const ackRecord = Buffer.alloc(12);
  const res = await suite(`append ${per} and ack the ${per} before, on ${queues} queues concurrently`, [
    {
      name: "edgehub",
      fn: async () => {
        await Promise.all(
          Array.from({ length: queues }, async (_, q) => {
            const before = tails.edgehub[q];
            const appended = eh.store.append(
              `q${q}`,
              Array.from({ length: per }, () => ({ body })),
            );
            await Promise.all([appended, before > 0 ? eh.store.ack(`q${q}`, before - 1) : undefined]);
            tails.edgehub[q] = before + per;
          }),
        );
      },
    },
    {
      name: "classic-level",
      fn: async () => {
        await Promise.all(
          Array.from({ length: queues }, (_, q) => {
            const first = tails.level[q];
            tails.level[q] = first + per;
            const ops = Array.from({ length: per }, (_, i) => ({
              type: "put",
              key: lv.key(`q${q}`, first + i),
              value: body,
            }));
            for (let i = first - per; i >= 0 && i < first; i++)
              ops.push({ type: "del", key: lv.key(`q${q}`, i) });
            return lv.db.batch(ops, { sync: true });
          }),
        );
      },
    },
    {
      name: "raw-file",
      fn: async () => {
        await Promise.all(
          Array.from({ length: queues }, (_, q) =>
            raw.append(`q${q}`, [...Array(per).fill(body), ackRecord]),
          ),
        );
      },
    },
  ]);
  await eh.close();
  await lv.close();
  await raw.close();
  const rows = Object.entries(res).map(([peer, r]) => ({
    peer,
    msgsPerSec: Math.round(r.ops * queues * per),
  }));
  console.log(`\nwritten and drained at once: msgs/s appended (and as many acked)`);
  table(rows.map((r) => ({ peer: r.peer, "msgs/s": fmt(r.msgsPerSec) })));
  save("store-through", {
    workload: `a queue written and drained at once: each call appends ${per} x 256 B and acknowledges the ${per} of the call before, on ${queues} queues concurrently, durable`,
    rows,
  });
}

try {
  const only = process.argv[2];
  if (!only || only === "append") await appendMatrix();
  if (!only || only === "replay") await replay();
  if (!only || only === "ack") await acks();
  if (!only || only === "through") await through();
} finally {
  rmSync(root, { recursive: true, force: true });
}
