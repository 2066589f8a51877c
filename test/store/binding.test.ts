/**
 * The native binding as the facade sees it: its generated type declarations are the ones
 * committed, and its errors cross with their code (no message to parse).
 */
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
