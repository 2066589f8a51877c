// Brokers the ingest benchmark measures side by side, each in its own process so its CPU
// time can be read from /proc: edgehub (its CLI), Mosquitto (Debian 2.0, persistence on),
// aedes, and a null sink.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const root = new URL("../../", import.meta.url).pathname;

function waitFor(child, pattern, what) {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`${what} did not start: ${out}`)), 30_000);
    const on = (d) => {
      out += d.toString();
      if (pattern.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout?.on("data", on);
    child.stderr?.on("data", on);
    child.on("exit", (code) => reject(new Error(`${what} exited (${code}): ${out}`)));
  });
}

/** Resolves once something accepts TCP connections on `port`. */
async function waitForPort(port, what) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function handle(name, child, port) {
  return {
    name,
    port,
    pid: child.pid,
    stop: () =>
      new Promise((resolve) => {
        child.removeAllListeners("exit");
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 5000).unref();
      }),
  };
}

export async function startEdgehub(dataDir, port) {
  const config = join(dataDir, "..", "edgehub-bench.json");
  writeFileSync(
    config,
    JSON.stringify({
      hostname: "localhost",
      dataDir,
      listen: { host: "127.0.0.1", mqtts: port, https: 0 },
      logLevel: "warn",
    }),
  );
  const child = spawn(
    process.execPath,
    [
      ...(process.env.EDGEHUB_NODE_ARGS?.split(" ").filter(Boolean) ?? []),
      join(root, "dist/cli/edgehub.js"),
      "start",
      "--config",
      config,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  await waitFor(child, /MQTT over TLS/, "edgehub");
  return handle("edgehub", child, port);
}

export async function startMosquitto(dir, port, certs) {
  const conf = join(dir, "mosquitto.conf");
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      `cafile ${certs.ca}`,
      `certfile ${certs.cert}`,
      `keyfile ${certs.key}`,
      "allow_anonymous true",
      "user root",
      "persistence true",
      `persistence_location ${dir}/`,
      "max_queued_messages 1000000",
      "max_inflight_messages 0",
      "log_type error",
      "",
    ].join("\n"),
  );
  // No -v: verbose logging of every publish would slow Mosquitto down unfairly.
  const child = spawn("mosquitto", ["-c", conf], { stdio: ["ignore", "pipe", "pipe"] });
  await waitForPort(port, "mosquitto");
  return handle("mosquitto", child, port);
}

/** Runs `script` (a Node peer of this folder) on `port`; `extra` arguments follow the certificate files. */
export async function startNode(name, script, port, certs, ...extra) {
  const child = spawn(process.execPath, [join(here, script), String(port), certs.cert, certs.key, ...extra], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  await waitFor(child, /ready/, name);
  return handle(name, child, port);
}
