/**
 * LazyFS (../shared/tools/lazyfs) mounted over a scratch directory: a FUSE file system that
 * keeps written bytes in its own cache until they are fsynced and drops every unsynced byte
 * on command. A SIGKILL leaves the kernel's page cache intact; a LazyFS clear-cache after
 * one is the power cut that shows a missing fsync.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, constants, existsSync, mkdirSync, openSync, writeFileSync, writeSync } from "node:fs";
import net from "node:net";
import { homedir } from "node:os";
import { join } from "node:path";
import { afterEach } from "vitest";
import { tempDir } from "./fixtures.js";

/** Set to 1 on a machine without FUSE (no /dev/fuse or not root): the power-cut tests skip. CI never sets it. */
export const NO_FUSE = process.env.EDGEHUB_NO_FUSE === "1";

/** The LazyFS binary: $LAZYFS_BIN, else where build.sh puts it ($LAZYFS_HOME, default ~/.cache/lazyfs). */
export function lazyfsBinary(): string {
  if (process.env.LAZYFS_BIN) return process.env.LAZYFS_BIN;
  const home = process.env.LAZYFS_HOME ?? join(homedir(), ".cache/lazyfs");
  return join(home, "src/lazyfs/build/lazyfs");
}

export interface LazyFs {
  /** The mounted directory: put the store or the hub's dataDir under it. */
  mnt: string;
  /** The power cut: every byte not fsynced is gone (resolves once LazyFS says so). */
  clearCache(): Promise<void>;
  /** Writes everything cached to disk, synced or not: what the kernel's writeback does given time. */
  checkpoint(): Promise<void>;
  unmount(): Promise<void>;
}

const mounted = new Set<LazyFs>();
afterEach(async () => {
  await Promise.all([...mounted].map((m) => m.unmount()));
});

/** Why LazyFS cannot run here, or undefined if it can (checked before mounting, to fail with a clear message). */
function cannotMount(bin: string): string | undefined {
  if (!existsSync("/dev/fuse")) return "no /dev/fuse on this machine";
  if (process.getuid?.() !== 0) return "mounting LazyFS needs root";
  if (!existsSync(bin))
    return `LazyFS is not built at ${bin}: run ../shared/tools/lazyfs/build.sh (it prints the binary; LAZYFS_BIN or LAZYFS_HOME point here)`;
  if (spawnSync("fusermount3", ["-V"]).error) return "fusermount3 is missing (Debian's fuse3)";
  return undefined;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isMounted = (dir: string) => spawnSync("mountpoint", ["-q", dir]).status === 0;

/** Mounts LazyFS on a fresh directory; unmounted after the test. Throws (never skips) when it cannot. */
export async function mountLazyFs(): Promise<LazyFs> {
  const bin = lazyfsBinary();
  const why = cannotMount(bin);
  if (why)
    throw new Error(`LazyFS cannot mount: ${why}. Set EDGEHUB_NO_FUSE=1 only on a machine without FUSE.`);
  // LazyFS takes a config path containing "-o" (any case) for a missing one: no hyphen
  // before mkdtemp's random letters.
  const dir = await tempDir("edgehub_lazyfs_");
  const mnt = join(dir, "mnt");
  const root = join(dir, "root");
  mkdirSync(mnt);
  mkdirSync(root);
  const faults = join(dir, "faults.fifo");
  const done = join(dir, "done.fifo");
  for (const f of [faults, done]) spawnSync("mkfifo", [f]);
  writeFileSync(
    join(dir, "lazyfs.toml"),
    [
      "[faults]",
      `fifo_path="${faults}"`,
      `fifo_path_completed="${done}"`,
      "[cache]",
      "apply_eviction=false",
      "[cache.simple]",
      // LazyFS pre-allocates its whole cache at mount: enough for these tests' stores, small
      // enough to mount in a second on a loaded machine.
      'custom_size="256mb"',
      "blocks_per_page=1",
      "[filesystem]",
      "log_all_operations=false",
      'logfile=""',
      "",
    ].join("\n"),
  );
  // LazyFS opens the completion fifo for writing and blocks until a reader has it: open it
  // first, read-write and non-blocking, so neither side waits on the other.
  const notices = new net.Socket({ fd: openSync(done, constants.O_RDWR | constants.O_NONBLOCK) });
  let heard = "";
  notices.setEncoding("utf8").on("data", (d: string) => {
    heard += d;
  });
  const child: ChildProcess = spawn(
    bin,
    [mnt, "--config-path", join(dir, "lazyfs.toml"), "-o", "modules=subdir", "-o", `subdir=${root}`, "-f"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  child.stdout?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    log += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const deadline = Date.now() + 30_000;
  while (!isMounted(mnt) || !log.includes("waiting for fault commands")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      notices.destroy();
      throw new Error(`LazyFS did not mount on ${mnt}: ${log.slice(-2000)}`);
    }
    await sleep(20);
  }
  const command = (cmd: string) => {
    // LazyFS holds the command fifo open read-write, so this open never blocks.
    const fd = openSync(faults, constants.O_WRONLY | constants.O_NONBLOCK);
    try {
      writeSync(fd, `${cmd}\n`);
    } finally {
      closeSync(fd);
    }
  };
  /** Resolves once `text` shows in `source()` after position `from` (bounded). */
  const heardOf = async (source: () => string, from: number, text: string, what: string) => {
    const until = Date.now() + 10_000;
    while (!source().slice(from).includes(text)) {
      if (Date.now() > until) throw new Error(`LazyFS did not ${what}: ${log.slice(-2000)}`);
      await sleep(10);
    }
  };
  const fs: LazyFs = {
    mnt,
    async clearCache() {
      const from = heard.length;
      command("lazyfs::clear-cache");
      await heardOf(() => heard, from, "finished::clear-cache", "clear its cache");
    },
    async checkpoint() {
      // LazyFS reports the end of a checkpoint only in its log.
      const from = log.length;
      command("lazyfs::cache-checkpoint");
      await heardOf(() => log, from, "checkpoint is done", "checkpoint");
    },
    async unmount() {
      if (!mounted.delete(fs)) return;
      for (let i = 0; i < 50 && isMounted(mnt); i++) {
        spawnSync("fusermount3", ["-u", mnt]);
        if (isMounted(mnt)) await sleep(100);
      }
      if (isMounted(mnt)) spawnSync("fusermount3", ["-uz", mnt]);
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
      notices.destroy();
    },
  };
  mounted.add(fs);
  return fs;
}
