// Brokers the benchmarks measure side by side, each in its own process so its CPU time and
// memory can be read from /proc: edgehub (its CLI), Mosquitto (Debian 2.0, persistence on),
// aedes, and a null sink. Each start has a run-only twin (runEdgehub, runMosquitto) that
// starts the process again on the same configuration and data, for outages and kills.
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { EdgeHub, silentLogger } from "../../dist/index.js";

const here = new URL(".", import.meta.url).pathname;
const root = new URL("../../", import.meta.url).pathname;
/** Output kept per process; older output is dropped (offsets stay valid, see `mark`). */
const KEEP_OUTPUT = 4 * 2 ** 20;
const TICK = 100; // clock ticks per second of /proc/<pid>/stat (Linux default)
/** Every process started here and still running: a benchmark that throws leaves none behind. */
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

/**
 * CPU time (user + system) of each of a process's threads so far, in seconds, summed by
 * thread name (`node` is the main thread; `rocksdb:*`, `edgehub-writer`, `libuv-worker`,
 * `V8 Worker`…): where a broker's CPU goes besides its event loop.
 */
export function threadCpuSeconds(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8").split(") ")[1].split(" ");
      out[comm] = (out[comm] ?? 0) + (Number(f[11]) + Number(f[12])) / TICK;
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

/** What each thread name used between two {@link threadCpuSeconds} readings, per million messages. */
export function threadCpuPerMillion(before, after, messages) {
  const out = {};
  for (const [name, secs] of Object.entries(after)) {
    const used = secs - (before[name] ?? 0);
    if (used > 0) out[name] = +((used / Math.max(messages, 1)) * 1e6).toFixed(1);
  }
  return out;
}

/** CPU time (user + system) a process has used so far, in seconds. */
export function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / TICK;
}

/** Resolves once something accepts TCP connections on `port` (polled every 10 ms) while `alive()`. */
async function waitForPort(port, what, alive = () => true) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!alive()) throw new Error(`${what} exited before it listened on ${port}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A port free on 127.0.0.1 now (for a broker that must come back on the same address). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/**
 * A handle on a broker process: its output (stdout and stderr, read continuously so the
 * process never blocks on a full pipe), waits on that output, and stop/kill.
 */
function handle(name, child, port) {
  let out = "";
  let dropped = 0; // characters dropped from the front of `out`
  let waiters = [];
  let exitCode;
  running.add(child);
  const exited = new Promise((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      exitCode = code ?? signal;
      for (const w of waiters) w.fail(new Error(`${name} exited (${exitCode}): ${out.slice(-4000)}`));
      waiters = [];
      resolve(exitCode);
    }),
  );
  const test = (w) => w.pattern.test(out.slice(Math.max(0, w.from - dropped)));
  const collect = (d) => {
    out += d.toString();
    if (out.length > KEEP_OUTPUT) {
      const cut = out.length - KEEP_OUTPUT / 2;
      out = out.slice(cut);
      dropped += cut;
    }
    waiters = waiters.filter((w) => {
      if (!test(w)) return true;
      w.done();
      return false;
    });
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const stop = (signal = "SIGTERM") => {
    if (exitCode !== undefined) return exited;
    child.kill(signal);
    if (signal !== "SIGKILL") setTimeout(() => child.kill("SIGKILL"), 10_000).unref();
    return exited;
  };
  return {
    name,
    port,
    pid: child.pid,
    /** Exit code or signal once it exited, else undefined. */
    get exitCode() {
      return exitCode;
    },
    output: () => out,
    /** A position in the output: `waitFor(…, { from })` looks only at what came after it. */
    mark: () => dropped + out.length,
    /** The output from `mark` on (what of it is still kept). */
    outputFrom: (mark) => out.slice(Math.max(0, mark - dropped)),
    /** Resolves once `pattern` shows in the output (from `from` on); rejects on exit or timeout. */
    waitFor(pattern, { from = 0, timeoutMs = 30_000 } = {}) {
      return new Promise((resolve, reject) => {
        const w = { pattern, from };
        const timer = setTimeout(() => {
          waiters = waiters.filter((x) => x !== w);
          reject(new Error(`${name}: no ${pattern} within ${timeoutMs} ms: ${out.slice(-4000)}`));
        }, timeoutMs);
        w.done = () => {
          clearTimeout(timer);
          resolve();
        };
        w.fail = (err) => {
          clearTimeout(timer);
          reject(err);
        };
        if (exitCode !== undefined) return w.fail(new Error(`${name} exited (${exitCode})`));
        if (test(w)) return w.done();
        waiters.push(w);
      });
    },
    /** Sends `signal` (SIGKILL 10 s later if it is still running); resolves with the exit code or signal. */
    stop,
    /** SIGKILL: no shutdown, no flush. */
    kill: () => stop("SIGKILL"),
  };
}

/** Samples a process's resident memory (VmRSS) every `everyMs`; `stop()` returns the peak in bytes. */
export function rssSampler(pid, everyMs = 200) {
  let peak = 0;
  const sample = () => {
    try {
      const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
      peak = Math.max(peak, Number(kb ?? 0) * 1024);
    } catch {
      // The process is gone (killed on purpose); the peak so far stands.
    }
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

/** Runs `edgehub start --config <file>`; resolves once it listens (both listeners are up). */
export async function runEdgehub(configFile, name = "edgehub") {
  const config = JSON.parse(readFileSync(configFile, "utf8"));
  // The shipped launcher (bin/edgehub: the daemon's memory settings); it execs node, so
  // the child's pid is the hub's. EDGEHUB_NODE_ARGS adds flags (--cpu-prof, say).
  const extraArgs = process.env.EDGEHUB_NODE_ARGS;
  const child = spawn(join(root, "bin/edgehub"), ["start", "--config", configFile], {
    stdio: ["ignore", "pipe", "pipe"],
    env: extraArgs
      ? {
          ...process.env,
          EDGEHUB_NODE_OPTIONS: `--max-semi-space-size=8 --max-old-space-size=128 ${extraArgs}`,
        }
      : process.env,
  });
  const h = handle(name, child, config.listen?.mqtts);
  await h.waitFor(/MQTT over TLS/);
  return h;
}

/** The TLS files a hub's development CA wrote under `dataDir`, for a peer broker to serve the same chain. */
export function hubCerts(dataDir) {
  return {
    ca: join(dataDir, "certs/ca.pem"),
    cert: join(dataDir, "certs/server.pem"),
    key: join(dataDir, "certs/server-key.pem"),
  };
}

/**
 * Writes `<dataDir>/../<name>-bench.json` (hostname localhost, MQTT on `port`, no HTTPS,
 * log level warn, connection caps lifted; `extra` keys replace these, `extra.listen` merges) and runs edgehub on it.
 * The handle's `config` is the file, for {@link runEdgehub} to start it again.
 */
/**
 * A hub in this process on `dataDir`, on free ports with AMQP and metrics off: where a bench
 * registers its devices (and gets the CA) before it runs the hub under test as a process on
 * the same data dir.
 */
export function provisioningHub(dataDir) {
  return EdgeHub.start(
    {
      hostname: "localhost",
      dataDir,
      listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
      metrics: false,
    },
    silentLogger,
  );
}

export async function startEdgehub(dataDir, port, extra = {}, name = "edgehub") {
  const config = join(dataDir, "..", `${name}-bench.json`);
  // Every benchmark client comes from 127.0.0.1, up to 1000 at once: the per-address and
  // total caps of a small board's defaults would refuse some.
  const limits = { maxConnections: 10_000, maxUnauthenticatedPerAddress: 10_000 };
  const base = {
    hostname: "localhost",
    dataDir,
    listen: { host: "127.0.0.1", mqtts: port, https: 0, amqps: false },
    limits,
  };
  writeFileSync(
    config,
    JSON.stringify({ ...base, logLevel: "warn", ...extra, listen: { ...base.listen, ...extra.listen } }),
  );
  const h = await runEdgehub(config, name);
  h.config = config;
  return h;
}

/**
 * Writes `<dir>/mosquitto.conf`: TLS listener on `port`, persistence in `dir` (snapshots
 * every `autosave_interval`, 1800 s by default), `maxQueuedMessages` per client (Debian's
 * default is 1000), `maxInflightMessages` (0: no limit; the default is 20), and `extra`
 * lines (a bridge, say). Returns the file's path.
 */
export function mosquittoConf(
  dir,
  port,
  certs,
  { maxQueuedMessages = 1_000_000, maxInflightMessages = 0, extra = [] } = {},
) {
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      `cafile ${certs.ca}`,
      `certfile ${certs.cert}`,
      `keyfile ${certs.key}`,
      "allow_anonymous true",
      // Benchmarks run as root; Mosquitto would otherwise drop to a user that cannot read the key.
      "user root",
      "persistence true",
      `persistence_location ${dir}/`,
      `max_queued_messages ${maxQueuedMessages}`,
      `max_inflight_messages ${maxInflightMessages}`,
      "log_type error",
      ...extra,
      "",
    ].join("\n"),
  );
  return conf;
}

/** Runs `mosquitto -c <conf>`; resolves once it accepts connections on `port`. */
export async function runMosquitto(conf, port, name = "mosquitto") {
  // No -v: verbose logging of every publish would slow Mosquitto down unfairly.
  const child = spawn("mosquitto", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  const h = handle(name, child, port);
  try {
    await waitForPort(port, name, () => h.exitCode === undefined);
  } catch (err) {
    throw new Error(`${err.message}: ${h.output().slice(-2000)}`);
  }
  return h;
}

/** {@link mosquittoConf} then {@link runMosquitto}; the handle's `config` is the file. */
export async function startMosquitto(dir, port, certs, options = {}, name = "mosquitto") {
  const config = mosquittoConf(dir, port, certs, options);
  const h = await runMosquitto(config, port, name);
  h.config = config;
  return h;
}

/** Runs `script` (a Node peer of this folder) on `port`; `extra` arguments follow the certificate files. */
export async function startNode(name, script, port, certs, ...extra) {
  const child = spawn(process.execPath, [join(here, script), String(port), certs.cert, certs.key, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const h = handle(name, child, port);
  await h.waitFor(/ready/);
  return h;
}
