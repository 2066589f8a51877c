/**
 * Files the hub writes once and cannot lose: the secret box's key (everything sealed in the
 * store is unreadable without it), the dev CA and server certificate, the service connection
 * string. Written to a temporary name, fsynced, renamed over the final name and the
 * directory fsynced, so a power cut leaves the old file or the new one, never an empty or
 * partial one. The store's own writes are fsynced by RocksDB; these are the hub's only
 * other files.
 */
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname, resolve } from "node:path";

/** Writes `data` to `path` (mode `mode`) durably: on disk, whole, when this resolves. */
export async function writeDurable(path: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  const file = await open(tmp, "w", mode);
  try {
    await file.chmod(mode); // the umask may have narrowed or widened it
    await file.writeFile(data);
    await file.datasync();
  } catch (err) {
    await file.close();
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await file.close();
  await rename(tmp, path);
  await syncDirectory(dirname(path));
}

/** Makes a directory's entries (a file created or renamed in it) durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/**
 * Creates `dir` and its missing parents (mode `mode`) so that they survive a power cut: the
 * directory holding each new one is fsynced.
 */
export async function mkdirDurable(dir: string, mode = 0o700): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode });
  if (first === undefined) return;
  for (let d = resolve(dir); ; d = dirname(d)) {
    await syncDirectory(dirname(d));
    if (d === resolve(first) || d === dirname(d)) break;
  }
}
