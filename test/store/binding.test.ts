/**
 * The native binding as the facade sees it: its generated type declarations are the ones
 * committed, its errors cross with their code (no message to parse), and its answers come
 * back through one channel per store (crates/node/src/completion.rs) in order.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DEFAULT_TTL, encodeBatch } from "../../ts/store/codec.js";
import { native } from "../../ts/store/native.js";
import { tempDir } from "../helpers/fixtures.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** A batch of one message of `size` bytes, as the facade packs it. */
function batchOf(size: number): Buffer {
  return encodeBatch([{ body: Buffer.alloc(size), properties: undefined, propsSize: 0, ttl: DEFAULT_TTL }]);
}

const options = {
  durability: "fsync",
  defaultTtlSecs: 7200,
  maxSizeBytes: 4096,
  whenFull: "reject",
} as const;

describe("the native binding", () => {
  it("is typed by the committed ts/store/binding.d.ts, byte for byte what `napi build --dts` generates", async () => {
    const generated = join(root, "native", "binding.d.ts");
    expect(existsSync(generated), `${generated} is written by npm run build:native`).toBe(true);
    const committed = await readFile(join(root, "ts", "store", "binding.d.ts"), "utf8");
    // A Rust change whose declarations are not committed would leave the facade typed
    // against a surface that no longer exists.
    expect(committed, "run npm run build:native and commit ts/store/binding.d.ts").toBe(
      await readFile(generated, "utf8"),
    );
    expect(committed).toContain("export declare function openStore(");
  });

  it("rejects with err.code set by Rust and the message alone, from a worker-thread task and from the writer thread", async () => {
    const dir = await tempDir();
    const store = await native().openStore(dir, options);
    // Task path (open on a worker thread): the directory is held by the first handle.
    const locked = await native()
      .openStore(dir, options)
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(locked).toBeInstanceOf(Error);
    expect(locked).toMatchObject({ code: "STORE_LOCKED" });
    expect((locked as Error).message).toMatch(/^store at .* is locked/);
    // Writer-thread path (a promise settled from Rust's writer): over the quota.
    const full = await store.append(["q"], batchOf(8192), 1).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(full).toMatchObject({ code: "STORE_FULL" });
    expect((full as Error).message).toMatch(/^store is full: /);
    await store.close();
    await expect(store.kvGet("ns", "k")).rejects.toMatchObject({
      code: "STORE_CLOSED",
      message: "the store is closed; open it again to use it",
    });
    await expect(store.ack("q", 0)).rejects.toMatchObject({ code: "STORE_CLOSED" });
  });

  // In a child process, so that nothing but the store's own channel keeps the loop alive:
  // an owed answer must hold the process (else Node exits on an unsettled top-level await,
  // code 13), and a store with nothing owed must not (else the process never ends).
  it.each(["fsync", "wal"] as const)(
    "settles %s appends in the order issued, holding the process only while an answer is owed",
    async (durability) => {
      const dir = await tempDir();
      const script = `
        import { MessageStore } from ${JSON.stringify(join(root, "dist", "store", "index.js"))};
        const store = await MessageStore.open(${JSON.stringify(dir)}, { durability: "${durability}" });
        const settled = [];
        await Promise.all(Array.from({ length: 500 }, (_, i) =>
          store.append("q", [{ body: Buffer.from(String(i)) }]).then(([offset]) => settled.push([i, offset]))));
        await store.kv.put("ns", "k", Buffer.from("v"));
        console.log(JSON.stringify({ settled, kv: String(await store.kv.get("ns", "k")) }));
        // No close: the process has to end by itself.
      `;
      const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
        encoding: "utf8",
        timeout: 30_000,
      });
      expect(child.signal, `the process did not end by itself: ${child.stderr}`).toBeNull();
      expect(child.status, child.stderr).toBe(0);
      const out = JSON.parse(child.stdout) as { settled: [number, number][]; kv: string };
      expect(out.settled).toEqual(Array.from({ length: 500 }, (_, i) => [i, i]));
      expect(out.kv).toBe("v");
    },
  );

  it("throws synchronously with the code when an argument is refused before any work starts", async () => {
    const store = await native().openStore(await tempDir(), options);
    try {
      expect(() => store.ack("q", -1)).toThrow(
        expect.objectContaining({
          code: "INVALID_ARGUMENT",
          message: "offset must be a non-negative integer, got -1",
        }),
      );
      // A batch whose header claims more messages than it holds.
      expect(() => store.append(["q"], batchOf(10), 2)).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT" }),
      );
    } finally {
      await store.close();
    }
    expect(() => store.stats()).toThrow(expect.objectContaining({ code: "STORE_CLOSED" }));
  });
});
