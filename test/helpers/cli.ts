/** The `edgehub` command as a child process: one-shot runs, and long ones (`monitor`) read as they go. */
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";

// The built command (`npm run build:ts` compiles it to dist/).
const cli = fileURLToPath(new URL("../../dist/cli/edgehub.js", import.meta.url));
const running = new Set<ChildProcess>();

afterEach(() => {
  for (const c of running) c.kill("SIGKILL");
  running.clear();
});

/** What a run printed and how it ended. */
export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A running command whose output is read as it comes. */
export interface CliProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once `pattern` shows on stdout or stderr (bounded). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<CliRun>;
}

/** Starts `edgehub …args`. */
export function spawnCli(args: readonly string[]): CliProcess {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  running.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<CliRun>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => {
      running.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    async waitFor(pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(stdout) && !pattern.test(stderr)) {
        if (child.exitCode !== null)
          throw new Error(`edgehub ${args.join(" ")} exited (${child.exitCode}): ${stderr}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${stdout}${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    exited,
  };
}

/** Runs `edgehub …args` to its end. */
export function runCli(args: readonly string[]): Promise<CliRun> {
  return spawnCli(args).exited;
}

/** Runs `edgehub …args --json`, expects exit 0, and parses stdout. */
export async function runJson(args: readonly string[]): Promise<unknown> {
  const r = await runCli([...args, "--json"]);
  if (r.code !== 0) throw new Error(`edgehub ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
