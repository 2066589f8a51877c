// The peers every store benchmark measures beside edgehub in the same run: classic-level
// (LevelDB for Node) with sync writes and the same batching, and a raw append-only file
// with fdatasync per batch, group-committed like our writer: the physical reference.
import { open as openFile } from "node:fs/promises";
import { join } from "node:path";
import { ClassicLevel } from "classic-level";
import { MessageStore } from "../../dist/index.js";

/** edgehub's MessageStore behind the common peer interface. */
export async function edgehubPeer(dir, opts = {}) {
  const store = await MessageStore.open(dir, opts);
  return {
    name: "edgehub",
    store,
    append: (queue, bodies) =>
      store.append(
        queue,
        bodies.map((body) => ({ body })),
      ),
    close: () => store.close(),
  };
}

/** classic-level with `sync: true`, one batch per append call, keys queue ++ offset. */
export async function levelPeer(dir, { sync = true } = {}) {
  const db = new ClassicLevel(dir, { keyEncoding: "utf8", valueEncoding: "buffer" });
  await db.open();
  const tails = new Map();
  const key = (q, n) => `${q}!${n.toString(16).padStart(16, "0")}`;
  return {
    name: "classic-level",
    db,
    key,
    append: async (queue, bodies) => {
      const first = tails.get(queue) ?? 0;
      tails.set(queue, first + bodies.length);
      await db.batch(
        bodies.map((value, i) => ({ type: "put", key: key(queue, first + i), value })),
        { sync },
      );
    },
    close: () => db.close(),
  };
}

/** Append-only file: length-prefixed records, one writev + fdatasync per group of callers. */
export async function rawPeer(dir) {
  const fh = await openFile(join(dir, "raw.log"), "a");
  let pending = [];
  let flushing = false;
  async function flush() {
    flushing = true;
    while (pending.length > 0) {
      const group = pending;
      pending = [];
      const bufs = [];
      for (const g of group) {
        for (const b of g.bodies) {
          const len = Buffer.allocUnsafe(4);
          len.writeUInt32LE(b.length);
          bufs.push(len, b);
        }
      }
      await fh.writev(bufs);
      await fh.datasync();
      for (const g of group) g.resolve();
    }
    flushing = false;
  }
  return {
    name: "raw-file",
    append: (_queue, bodies) =>
      new Promise((resolve) => {
        pending.push({ bodies, resolve });
        if (!flushing) void flush();
      }),
    close: () => fh.close(),
  };
}

export const PEERS = [edgehubPeer, levelPeer, rawPeer];
