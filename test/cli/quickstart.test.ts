/**
 * README's "first five minutes", run line by line exactly as README shows them, against a
 * real `edgehub start` on its embedded defaults (data in ./edgehub-data, MQTT 8883, service
 * API 8443) in a fresh directory laid out like a clone. The lines are parsed from README, so
 * a README that drifts from what works fails here.
 *
 * Two substitutions, both what the shell would run anyway: `npx edgehub` is the package's
 * own bin (`bin/edgehub`, as npx resolves it in a clone), through an `npx` on PATH that runs
 * only that; `npm start` is its script minus the build step (the suite runs on the build).
 */
import { chmod, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { type CliProcess, spawnTracked } from "../helpers/cli.js";
import { eventually, tempDir } from "../helpers/fixtures.js";

const repo = fileURLToPath(new URL("../../", import.meta.url));

/** One line of a shell block: the command, and the output README shows under it, if any. */
interface Line {
  command: string;
  /** README's comment says it runs until Ctrl-C: started, not waited for. */
  background: boolean;
  /** The `# …` line under it: its output, with `<…>` and `…` standing for anything. */
  shows?: RegExp;
}

/** The section's shell lines and the lines of its JS excerpt. */
function fiveMinutes(readme: string): { lines: Line[]; js: string[] } {
  const section = readme.split(/^### The first five minutes$/m)[1]?.split(/^##+ /m)[0];
  if (!section) throw new Error('README has no "### The first five minutes" section');
  const lines: Line[] = [];
  const js: string[] = [];
  for (const [, lang, body] of section.matchAll(/```(sh|js)\n([\s\S]*?)```/g)) {
    const rows = (body ?? "")
      .split("\n")
      .map((l) => l.trim())
      .filter(Boolean);
    if (lang === "js") {
      js.push(...rows);
      continue;
    }
    for (const row of rows) {
      const last = lines.at(-1);
      if (row.startsWith("# ") && last) {
        const pattern = row
          .slice(2)
          .split(/<[^>]+>|…/)
          .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
          .join("[^;\\s]+");
        last.shows = new RegExp(`^${pattern}$`, "m");
      } else lines.push({ command: row, background: /until Ctrl-C/.test(row) });
    }
  }
  return { lines, js };
}

/** What each long-running line prints once the next line may rely on it. */
const READY: Array<[line: RegExp, ready: RegExp]> = [
  [/^npm start\b/, /^edgehub running as /m],
  [/^npx edgehub monitor\b/, /^monitoring device-to-cloud messages/m],
  [/^node examples\/device\.mjs\b/, /^device: connected$/m],
];

/** `line` through `sh`, as a terminal would run it (`exec`: a Ctrl-C reaches the command itself). */
function shell(line: string, cwd: string, path: string): CliProcess {
  return spawnTracked("sh", ["-c", `exec ${line}`], { cwd, env: { ...process.env, PATH: path } });
}

/** Everything a line printed, stdout and stderr. */
const printed = (run: CliProcess) => run.stdout() + run.stderr();

describe("README's first five minutes", () => {
  it("runs every line as shown: hub, device, monitor, method, C2D, twin, status", async () => {
    const readme = await readFile(join(repo, "README.md"), "utf8");
    const { lines, js } = fiveMinutes(readme);
    expect(lines.length).toBeGreaterThanOrEqual(8);

    // The device code README shows is the example's, line for line.
    const example = await readFile(join(repo, "examples", "device.mjs"), "utf8");
    expect(js.length).toBeGreaterThan(0);
    for (const line of js) expect(example, line).toContain(line);

    // A directory laid out like a clone: the command, the examples, an npx that runs the command.
    const cwd = await tempDir("edgehub-quickstart-");
    await symlink(join(repo, "bin"), join(cwd, "bin"));
    await symlink(join(repo, "examples"), join(cwd, "examples"));
    const shims = await tempDir("edgehub-shims-");
    const npx = join(shims, "npx");
    await writeFile(
      npx,
      `#!/bin/sh\n[ "$1" = edgehub ] || { echo "npx $1: only edgehub here" >&2; exit 127; }\nshift\nexec "${join(repo, "bin", "edgehub")}" "$@"\n`,
    );
    await chmod(npx, 0o755);
    const path = `${shims}:${process.env.PATH ?? ""}`;
    const pkg = JSON.parse(await readFile(join(repo, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    const startScript = /^npm run build --silent && (.+)$/.exec(pkg.scripts.start ?? "")?.[1];
    expect(startScript, "package.json's start script builds, then runs the command").toBeDefined();

    const background: Array<{ line: string; run: CliProcess }> = [];
    const done: Array<{ line: string; code: number | null; out: string }> = [];
    for (const { command, background: long, shows } of lines) {
      const line = command.replace(/^npm start(?=\s|$)/, startScript ?? "");
      const run = shell(line, cwd, path);
      if (long) {
        background.push({ line: command, run });
        // Ready once it says so (log lines may come first); another long-running line once it says anything.
        const ready = READY.find(([line]) => line.test(command))?.[1] ?? /./;
        await eventually(`${command} started`, () => {
          if (run.child.exitCode !== null) throw new Error(`${command} exited: ${printed(run)}`);
          return ready.test(printed(run));
        });
        continue;
      }
      const { code } = await run.exited;
      expect(code, `${command}\n${printed(run)}`).toBe(0);
      if (shows) expect(printed(run), command).toMatch(shows);
      done.push({ line: command, code, out: printed(run) });
    }

    const started = (prefix: string) => {
      const found = background.find((b) => b.line.startsWith(prefix));
      if (!found) throw new Error(`README's first five minutes no longer run ${prefix}`);
      return found.run;
    };
    const hub = started("npm start");
    const monitor = started("npx edgehub monitor");
    const device = started("node examples/device.mjs");
    expect(printed(hub)).toMatch(/edgehub running as /);
    // What README promises each step does, seen where it shows.
    await eventually("the device's telemetry in monitor", () =>
      /thermostat1 \{"temperature":21\.5,"n":1\}/.test(printed(monitor)),
    );
    await eventually("the method, C2D and desired change at the device", () => {
      const out = printed(device);
      return (
        out.includes('device: method reboot {"delay":5}') &&
        out.includes("device: c2d open the valve [priority=high]") &&
        out.includes('device: desired {"interval":5}')
      );
    });
    const outOf = (prefix: string) => done.find((d) => d.line.startsWith(prefix))?.out ?? "";
    expect(outOf("npx edgehub method invoke")).toMatch(/^status 200\n/);
    expect(outOf("npx edgehub twin show")).toMatch(/"interval": 5/);
    expect(outOf("npx edgehub device list")).toMatch(/^thermostat1 auth=sas enabled Connected$/m);
    expect(outOf("npx edgehub status")).toMatch(/^clients +1 connected: thermostat1$/m);

    // Ctrl-C ends each, the hub last, all cleanly.
    for (const run of [device, monitor, hub]) {
      run.child.kill("SIGINT");
      expect((await run.exited).code, printed(run)).toBe(0);
    }
  }, 120_000);
});
