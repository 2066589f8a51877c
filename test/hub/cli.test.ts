import { type ChildProcess, spawn } from "node:child_process";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import tls from "node:tls";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/fixtures.js";

const cli = fileURLToPath(new URL("../../dist/cli/edgehub.js", import.meta.url));

function run(args: string[]): { child: ChildProcess; out: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, out: () => out, exited };
}

async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe("edgehub command", () => {
  it("starts on a config, serves TLS with its CA, writes the service connection string 0600 without logging it, stops on SIGTERM", async () => {
    const dir = await tempDir();
    const config = join(dir, "edgehub.json");
    const dataDir = join(dir, "data");
    await writeFile(
      config,
      JSON.stringify({
        hostname: "localhost",
        dataDir,
        listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
      }),
    );
    const hub = run(["start", "--config", config]);
    await until("startup banner", () => /MQTT over TLS\s+127\.0\.0\.1:\d+/.test(hub.out()));
    // The banner's port: a log line before it may name another (the default metrics port, taken).
    const port = Number(/MQTT over TLS\s+127\.0\.0\.1:(\d+)/.exec(hub.out())?.[1]);
    const ca = await readFile(join(dataDir, "certs", "ca.pem"), "utf8");
    const socket = tls.connect({ host: "localhost", port, ca });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", () => resolve());
      socket.once("error", reject);
    });
    expect(socket.authorized).toBe(true);
    socket.destroy();
    const csFile = join(dataDir, "service-connection-string");
    expect((await stat(csFile)).mode & 0o777).toBe(0o600);
    const cs = (await readFile(csFile, "utf8")).trim();
    expect(cs).toMatch(
      /^HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=[A-Za-z0-9+/=]{44}$/,
    );
    const key = cs.split("SharedAccessKey=")[1] ?? "";
    hub.child.kill("SIGTERM");
    expect(await hub.exited).toBe(0);
    expect(hub.out()).not.toContain(key);
    expect((await stat(join(dataDir, "secrets.key"))).mode & 0o777).toBe(0o600);
  });

  it("refuses a bad config naming the key, and prints usage for a bad command", async () => {
    const dir = await tempDir();
    const config = join(dir, "bad.json");
    await writeFile(config, JSON.stringify({ listen: { mqtts: 70000 } }));
    const bad = run(["start", "--config", config]);
    expect(await bad.exited).toBe(1);
    expect(bad.out()).toContain("listen.mqtts");
    expect(bad.out()).toContain("CONFIG_INVALID");
    const usage = run(["frobnicate"]);
    expect(await usage.exited).toBe(2);
    expect(usage.out()).toContain("usage: edgehub <command>");
  });
});
