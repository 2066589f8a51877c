import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { MessageStore, type StoreOptions } from "../../ts/index.js";

const dirs: string[] = [];

/** A fresh directory, removed after the test. */
export async function tempDir(prefix = "edgehub-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** Polls `check` until it holds (bounded); the store sweeps expiry in the background. */
export async function eventually(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stores: MessageStore[] = [];

/** Opens a store that is closed after the test. */
export async function openStore(dir: string, opts: StoreOptions = {}): Promise<MessageStore> {
  const s = await MessageStore.open(dir, opts);
  stores.push(s);
  return s;
}

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});
