/**
 * The data directory holds the store, the key file of the encrypted caches and the service
 * credential: only the hub's user may read it. A new one is made 0700; an existing one open
 * to group or others (e.g. made 0755 by a package's `install -d`) is tightened to 0700 at
 * start and logged, as a daemon should rather fix its own directory than refuse to start.
 * If it cannot be (another user's directory), the hub refuses with CONFIG_INVALID.
 */
import { chmod, stat } from "node:fs/promises";
import { mkdirDurable } from "../durable-file.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { Logger } from "../log.js";

/** Creates `dir` 0700, or makes an existing one 0700; throws CONFIG_INVALID when it cannot. */
export async function ensurePrivateDataDir(dir: string, log: Logger): Promise<void> {
  await mkdirDurable(dir, 0o700);
  const mode = (await stat(dir)).mode & 0o777;
  if ((mode & 0o077) === 0) return;
  const was = mode.toString(8).padStart(4, "0");
  try {
    await chmod(dir, 0o700);
  } catch (err) {
    throw new EdgeHubError(
      ErrorCodes.CONFIG_INVALID,
      `config key dataDir: ${dir} is open to other users (mode ${was}) and could not be made 0700: ${(err as Error).message}`,
    );
  }
  log.log("warn", "data-dir-mode-tightened", { dataDir: dir, was, now: "0700" });
}
