/** The crash writer (test/fixtures/crash-writer.mjs) as a child process, SIGKILLed at a random moment. */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const child = fileURLToPath(new URL("../fixtures/crash-writer.mjs", import.meta.url));
const dist = new URL("../../dist/index.js", import.meta.url).href;

/** An append the writer reported durable: its offsets in both queues and its body. */
export interface Reported {
  offset: number;
  mirror: number;
  body: Buffer;
}

export interface KillOptions {
  /** The store's durability in the writer (default "fsync"). */
  durability?: "fsync" | "wal";
  /** Kill once this many appends were reported (then 0-50 ms later); default: 30-430 ms after it opened. */
  minReported?: number;
}

/** Runs the writer on the store in `dir` until a random moment, SIGKILLs it, returns what it reported as durable. */
export function runAndKill(dir: string, round: number, opts: KillOptions = {}): Promise<Reported[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, dir, dist, String(round), opts.durability ?? "fsync"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let timer: NodeJS.Timeout | undefined;
    const kill = (ms: number) => {
      timer = setTimeout(() => p.kill("SIGKILL"), ms);
    };
    p.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
      if (timer || !out.startsWith("ready\n")) return;
      if (opts.minReported === undefined) kill(30 + Math.random() * 400);
      else if (out.split("\n").length - 2 >= opts.minReported) kill(Math.random() * 50);
    });
    p.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    p.on("error", reject);
    p.on("exit", (_code, signal) => {
      if (signal !== "SIGKILL") return reject(new Error(`writer exited on its own: ${err}`));
      // Only complete lines were reported; a torn last line was never fully written.
      const lines = out.split("\n").slice(1, -1);
      resolve(
        lines.map((l) => {
          const [offset, mirror, b64] = l.split(" ");
          return { offset: Number(offset), mirror: Number(mirror), body: Buffer.from(b64 ?? "", "base64") };
        }),
      );
    });
  });
}
