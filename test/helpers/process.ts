/** Hubs run as their own processes (the `edgehub` command), for kills and restarts. */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";
import "./fixtures.js";

// The shipped launcher (it execs node with the daemon's memory settings).
const launcher = fileURLToPath(new URL("../../bin/edgehub", import.meta.url));
const running = new Set<ChildProcess>();

afterEach(async () => {
  await Promise.all(
    [...running].map(
      (c) =>
        new Promise<void>((resolve) => {
          c.once("exit", () => resolve());
          c.kill("SIGKILL");
        }),
    ),
  );
  running.clear();
});

/** Kills `child` after the test if it is still running, as the hubs started here are. */
export function killAfterTest(child: ChildProcess): void {
  running.add(child);
  child.once("exit", () => running.delete(child));
}

// Fixed ports come from below the kernel's ephemeral range (32768..60999 by default), so
// neither `listen(0)` nor the local end of an outgoing connection can take one while its hub
// is down (a connection to a dead port can even take that very port and connect to itself):
// each vitest worker has its own 1500-port slice of 17000..32000, walked in order.
const SLICE = 1500;
const slice = 17_000 + ((Number(process.env.VITEST_POOL_ID ?? 0) || 0) % 10) * SLICE;
let nextPort = slice + Math.floor(Math.random() * SLICE);

function tryListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

/**
 * A port free on 127.0.0.1 now, for hubs that must come back on the same address: outside
 * the ephemeral range, so nothing else is given it while its hub is down.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < SLICE; i++) {
    const port = slice + ((nextPort++ - slice) % SLICE);
    if (await tryListen(port)) return port;
  }
  throw new Error(`no free port in ${slice}..${slice + SLICE - 1}`);
}

/**
 * Listeners of 127.0.0.1 on {@link freePort}s, for a hub that must come back on the same
 * ports: MQTT and HTTPS, and AMQP when `amqp` (off otherwise, so no test binds 5671).
 */
export async function fixedListen(
  amqp = false,
): Promise<{ host: string; mqtts: number; https: number; amqps: number | false }> {
  return {
    host: "127.0.0.1",
    mqtts: await freePort(),
    https: await freePort(),
    amqps: amqp ? await freePort() : false,
  };
}

/** A hub process. */
export interface HubProcess {
  pid: number;
  /** Everything it wrote (stdout and its JSON log lines on stderr). */
  output(): string;
  /** Resolves once `pattern` shows in the output (bounded). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  /** Resident memory now, from /proc. */
  rssBytes(): number;
  /** Sends `signal` and resolves with the exit code once it exited. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `edgehub start` on `config` (written to `<dir>/edgehub.json`), with `env` added to
 * the environment; resolves once it listens.
 */
export async function hubProcess(
  dir: string,
  config: object,
  env: Record<string, string> = {},
): Promise<HubProcess> {
  const file = join(dir, "edgehub.json");
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(launcher, ["start", "--config", file], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  running.add(child);
  let out = "";
  const append = (d: Buffer) => {
    out += d.toString();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (code) => {
      running.delete(child);
      resolve(code);
    }),
  );
  const handle: HubProcess = {
    pid: child.pid ?? 0,
    output: () => out,
    async waitFor(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (child.exitCode !== null) throw new Error(`hub exited (${child.exitCode}): ${out}`);
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for ${pattern} in: ${out.slice(-4000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    rssBytes() {
      const status = readFileSync(`/proc/${child.pid}/status`, "utf8");
      return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
    },
    stop(signal = "SIGTERM") {
      child.kill(signal);
      return exited;
    },
  };
  await handle.waitFor(/edgehub running/);
  return handle;
}
