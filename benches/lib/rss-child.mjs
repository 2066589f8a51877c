// Child of backlog.bench.mjs: opens a store holding a backlog, appends durably from 32
// callers for a while, and reports its peak RSS. One process per peer so each RSS is its own.
import { edgehubPeer, levelPeer } from "./peers.mjs";

const [peerName, dir, seconds] = process.argv.slice(2);
const peer = peerName === "edgehub" ? await edgehubPeer(dir) : await levelPeer(dir);
let peak = process.memoryUsage().rss;
const opened = peak;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 50);
const body = Buffer.alloc(256, 7);
const until = Date.now() + Number(seconds) * 1000;
let appended = 0;
await Promise.all(
  Array.from({ length: 32 }, async (_, c) => {
    while (Date.now() < until) {
      await peer.append(`live${c}`, Array(10).fill(body));
      appended += 10;
    }
  }),
);
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage().rss);
await peer.close();
process.stdout.write(`${JSON.stringify({ openedRssBytes: opened, peakRssBytes: peak, appended })}\n`);
