/** The `edgehub` command as a child process: one-shot runs, and long ones (`monitor`, `start`) read as they go. */
import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach } from "vitest";
import type { ReadyLine } from "../../ts/cli/start.js";

// The built command (`npm run build:ts` compiles it to dist/).
export const cli = fileURLToPath(new URL("../../dist/cli/edgehub.js", import.meta.url));
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

/** Starts `edgehub …args` (in `cwd`, default this process's). */
export function spawnCli(args: readonly string[], cwd?: string): CliProcess {
  return spawnTracked(process.execPath, [cli, ...args], { ...(cwd === undefined ? {} : { cwd }) });
}

/**
 * Starts `file …args` with its output read as it comes, killed after the test if still
 * running: the command itself, or a shell line around it (a pipe, README's lines).
 */
export function spawnTracked(
  file: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): CliProcess {
  const child = spawn(file, [...args], { stdio: ["ignore", "pipe", "pipe"], ...options });
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
          throw new Error(`${args.join(" ")} exited (${child.exitCode}): ${stderr}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}: ${stdout}${stderr}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    exited,
  };
}

/** Runs `edgehub …args` to its end (in `cwd`, default this process's). */
export function runCli(args: readonly string[], cwd?: string): Promise<CliRun> {
  return spawnCli(args, cwd).exited;
}

/** Runs `edgehub …args --json`, expects exit 0, and parses stdout. */
export async function runJson(args: readonly string[]): Promise<unknown> {
  const r = await runCli([...args, "--json"]);
  if (r.code !== 0) throw new Error(`edgehub ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** A hub run by `edgehub start --json`, and how the commands reach it. */
export interface StartedHub {
  run: CliProcess;
  /** The line `start --json` printed when ready. */
  ready: ReadyLine;
  /** `--data-dir … --port …` for this hub. */
  login: string[];
  /** The CA its clients trust, PEM. */
  caPem: string;
}

/** Runs `edgehub start --json` on `config` (written to `<dir>/edgehub.json`); resolves once it is ready. */
export async function startJson(dir: string, config: object): Promise<StartedHub> {
  const file = join(dir, "edgehub.json");
  await writeFile(file, JSON.stringify(config));
  const run = spawnCli(["start", "--json", "--config", file]);
  await run.waitFor(/"event":"ready"/, 30_000);
  const line = run
    .stdout()
    .split("\n")
    .find((l) => l.includes('"event":"ready"'));
  const ready = JSON.parse(line ?? "") as ReadyLine;
  return {
    run,
    ready,
    login: ["--data-dir", ready.dataDir, "--port", String(ready.ports.https)],
    caPem: await readFile(ready.caFile, "utf8"),
  };
}
