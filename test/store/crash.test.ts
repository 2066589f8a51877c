import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { MessageStore } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";

const child = fileURLToPath(new URL("../fixtures/crash-writer.mjs", import.meta.url));
const dist = new URL("../../dist/index.js", import.meta.url).href;

interface Reported {
  offset: number;
  mirror: number;
  body: Buffer;
}

/** Runs the writer until a random moment, SIGKILLs it, returns what it reported as durable. */
function runAndKill(dir: string, round: number): Promise<Reported[]> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, dir, dist, String(round)], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    let timer: NodeJS.Timeout | undefined;
    p.stdout.setEncoding("utf8").on("data", (d: string) => {
      if (!timer && (out + d).startsWith("ready\n")) {
        timer = setTimeout(() => p.kill("SIGKILL"), 30 + Math.random() * 400);
      }
      out += d;
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

describe("crash consistency", () => {
  it("keeps every acknowledged append across repeated SIGKILLs, in order, offsets monotonic", async () => {
    const dir = await tempDir();
    const all: Reported[] = [];
    let prevTail = 0;
    for (let round = 0; round < 12; round++) {
      const reported = await runAndKill(dir, round);
      all.push(...reported);
      const store = await MessageStore.open(dir);
      try {
        const stats = await store.stats();
        const q = stats.queues.find((x) => x.name === "q");
        const mirror = stats.queues.find((x) => x.name === "mirror");
        const tail = q?.tail ?? 0;
        // Offsets never go back, and both queues of the atomic append agree.
        expect(tail).toBeGreaterThanOrEqual(prevTail);
        expect(mirror?.tail).toBe(tail);
        for (const r of reported) expect(r.offset).toBeGreaterThanOrEqual(prevTail);
        prevTail = tail;
        const stored = new Map<number, Buffer>();
        for (let from = 0; from < tail; ) {
          const batch = await store.read("q", { from, limit: 5000 });
          for (const m of batch) stored.set(m.offset, Buffer.from(m.body));
          from = (batch.at(-1)?.offset ?? tail) + 1;
        }
        // No gaps: whatever survived is a contiguous prefix of the offsets.
        expect(stored.size).toBe(tail);
        for (const r of all) {
          expect(r.mirror).toBe(r.offset);
          const got = stored.get(r.offset);
          expect(got, `offset ${r.offset} reported durable but missing`).toBeDefined();
          expect(Buffer.compare(got as Buffer, r.body)).toBe(0);
        }
      } finally {
        await store.close();
      }
    }
    expect(all.length).toBeGreaterThan(100);
  }, 120_000);
});
