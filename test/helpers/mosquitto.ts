/** A real Mosquitto (Debian's) over TLS, started and stopped by the test. */
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { afterEach } from "vitest";
import { devTls } from "../../ts/certs/dev-ca.js";
import "./fixtures.js";

const running = new Set<ChildProcess>();
afterEach(async () => {
  await Promise.all([...running].map((c) => stop(c, "SIGKILL")));
});

function stop(c: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (c.exitCode !== null) return resolve();
    c.once("exit", () => resolve());
    c.kill(signal);
  });
}

async function listening(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A Mosquitto broker on `port` with persistence in `dir`; restartable on the same state. */
export class Mosquitto {
  readonly caFile: string;
  readonly ca: string;
  readonly #conf: string;
  readonly port: number;
  #child: ChildProcess | undefined;

  private constructor(conf: string, port: number, caFile: string, ca: string) {
    this.#conf = conf;
    this.port = port;
    this.caFile = caFile;
    this.ca = ca;
  }

  /** `extra`: more lines for its configuration (e.g. `max_packet_size 4096`). */
  static async start(dir: string, port: number, extra: string[] = []): Promise<Mosquitto> {
    const certs = await devTls(join(dir, "certs"), "localhost");
    const conf = join(dir, "mosquitto.conf");
    writeFileSync(
      conf,
      [
        `listener ${port} 127.0.0.1`,
        `cafile ${join(dir, "certs/ca.pem")}`,
        `certfile ${join(dir, "certs/server.pem")}`,
        `keyfile ${join(dir, "certs/server-key.pem")}`,
        "allow_anonymous true",
        // Tests run as root; Mosquitto would otherwise drop to a user that cannot read the key.
        "user root",
        "persistence true",
        `persistence_location ${dir}/`,
        "max_queued_messages 100000",
        "log_type error",
        ...extra,
        "",
      ].join("\n"),
    );
    const m = new Mosquitto(conf, port, certs.caFile, certs.ca);
    await m.restart();
    return m;
  }

  /** Starts it again (after {@link Mosquitto.stop}) on the same port and persisted state. */
  async restart(): Promise<void> {
    const child = spawn("mosquitto", ["-c", this.#conf], { stdio: "ignore" });
    running.add(child);
    child.on("exit", () => running.delete(child));
    this.#child = child;
    await listening(this.port);
  }

  /** SIGTERM saves its persistence file; SIGKILL loses what it held in memory. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.#child) await stop(this.#child, signal);
  }
}
