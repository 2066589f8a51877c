/**
 * The published packages, as a gateway daemon's project gets them: `scripts/pack.mjs` (the
 * part of `npm run pack` after the TypeScript build) writes the `edgehub` tarball and this
 * machine's platform tarball; both install into an empty project with no `cargo` on PATH and
 * no network; there examples/daemon.mjs runs and `npx edgehub --version` answers.
 *
 * Offline, the runtime dependencies come from npm's cache. npm 11's `npm install` without a
 * lockfile resolves every package from its full registry document (arborist's
 * fetchManifest asks for fullMetadata), which the cache does not hold after an `npm ci`
 * (that reads the abbreviated ones), so the project gets the lockfile a daemon's project
 * commits, and `npm ci --offline` installs from it: edgehub's own lock pins the same
 * versions and integrities, and the platform packages are listed as npm writes them.
 */
import { execFile, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { platformSuffix, supportedPlatforms } from "../ts/store/native.js";
import { tempDir } from "./helpers/fixtures.js";

const run = promisify(execFile);
const root = fileURLToPath(new URL("../", import.meta.url));

/** The environment of a machine without Rust or a network: node's own directory and the system's. */
function offlineEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  // npm_* variables of the `npm test` running this would steer the inner npm.
  for (const [k, v] of Object.entries(process.env)) if (!/^npm_/i.test(k)) env[k] = v;
  env.PATH = [dirname(process.execPath), "/usr/bin", "/bin"].join(":");
  env.npm_config_offline = "true";
  // Any request that still tried the network would go to a port where nothing listens.
  for (const k of ["npm_config_proxy", "npm_config_https_proxy", "HTTP_PROXY", "HTTPS_PROXY"])
    env[k] = "http://127.0.0.1:9/";
  delete env.CARGO_HOME;
  delete env.RUSTUP_HOME;
  return env;
}

/** `argv` in a network namespace of its own (no interfaces) where the machine allows it. */
function withoutNetwork(argv: string[]): string[] {
  return spawnSync("unshare", ["-n", "true"]).status === 0 ? ["unshare", "-n", ...argv] : argv;
}

interface LockEntry {
  version?: string;
  dev?: boolean;
  devOptional?: boolean;
  [key: string]: unknown;
}

/**
 * The package.json and package-lock.json of a project depending on the two tarballs, as npm
 * writes them: edgehub's runtime dependencies pinned as in edgehub's own lock, every
 * platform package listed (npm installs the one whose os/cpu/libc fit).
 */
async function consumerProject(dir: string, tarballs: [string, string], version: string): Promise<void> {
  const lock = JSON.parse(await readFile(join(root, "package-lock.json"), "utf8")) as {
    packages: Record<string, LockEntry>;
  };
  const self = lock.packages[""] as LockEntry;
  const [edgehub, platform] = tarballs;
  const suffix = platformSuffix();
  const sri = async (f: string) =>
    `sha512-${createHash("sha512")
      .update(await readFile(f))
      .digest("base64")}`;
  const dependencies = { edgehub: `file:${edgehub}`, [`edgehub-${suffix}`]: `file:${platform}` };
  const packages: Record<string, LockEntry> = { "": { name: "gateway-daemon", dependencies } };
  for (const [path, entry] of Object.entries(lock.packages))
    if (path !== "" && !entry.dev && !entry.devOptional) packages[path] = entry;
  packages["node_modules/edgehub"] = {
    version,
    resolved: `file:${edgehub}`,
    integrity: await sri(edgehub),
    dependencies: self.dependencies,
    optionalDependencies: Object.fromEntries(supportedPlatforms().map((p) => [`edgehub-${p}`, version])),
    bin: self.bin,
    engines: self.engines,
  };
  for (const p of supportedPlatforms()) {
    const [os, cpu, abi] = p.split("-");
    const name = `edgehub-${p}`;
    packages[`node_modules/${name}`] = {
      version,
      resolved:
        p === suffix ? `file:${platform}` : `https://registry.npmjs.org/${name}/-/${name}-${version}.tgz`,
      ...(p === suffix ? { integrity: await sri(platform) } : {}),
      cpu: [cpu],
      os: [os],
      libc: [abi === "gnu" ? "glibc" : "musl"],
      optional: true,
    };
  }
  await writeFile(
    join(dir, "package.json"),
    JSON.stringify({ name: "gateway-daemon", private: true, type: "module", dependencies }),
  );
  await writeFile(
    join(dir, "package-lock.json"),
    JSON.stringify({ name: "gateway-daemon", lockfileVersion: 3, requires: true, packages }),
  );
}

describe("the npm packages", () => {
  it("install offline without cargo and run an embedding daemon and the edgehub command", async () => {
    const dir = await tempDir("edgehub-pack-");
    const out = join(dir, "pack");
    const { stdout } = await run(process.execPath, [join(root, "scripts/pack.mjs"), out], { cwd: root });
    const tarballs = stdout.trim().split("\n");
    const suffix = platformSuffix();
    const version = JSON.parse(await readFile(join(root, "package.json"), "utf8")).version as string;
    expect(tarballs.map((t) => t.slice(out.length + 1))).toEqual([
      `edgehub-${version}.tgz`,
      `edgehub-${suffix}-${version}.tgz`,
    ]);

    const app = join(dir, "app");
    await mkdir(app);
    await consumerProject(app, tarballs as [string, string], version);
    const env = offlineEnv();
    expect(spawnSync("sh", ["-c", "command -v cargo rustc"], { env }).status).not.toBe(0);

    const started = performance.now();
    const [cmd = "", ...args] = withoutNetwork(["npm", "ci", "--offline", "--no-audit", "--no-fund"]);
    await run(cmd, args, { cwd: app, env });
    const seconds = (performance.now() - started) / 1000;
    process.stdout.write(`npm ci --offline of edgehub and edgehub-${suffix}: ${seconds.toFixed(1)} s\n`);

    // The add-on came in the platform package, an optional dependency at the same version.
    const installed = JSON.parse(await readFile(join(app, "node_modules/edgehub/package.json"), "utf8"));
    expect(installed.optionalDependencies).toEqual({
      "edgehub-linux-x64-gnu": version,
      "edgehub-linux-arm64-gnu": version,
    });
    expect(installed.scripts).toBeUndefined();
    await stat(join(app, `node_modules/edgehub-${suffix}/edgehub.${suffix}.node`));
    await expect(stat(join(app, "node_modules/edgehub/native"))).rejects.toThrow(/ENOENT/);

    await copyFile(join(root, "examples/daemon.mjs"), join(app, "daemon.mjs"));
    const daemon = await run(process.execPath, ["daemon.mjs"], { cwd: app, env });
    process.stdout.write(daemon.stdout);
    expect(daemon.stdout).toMatch(/created device sensor-1/);
    expect(daemon.stdout).toMatch(/received from sensor-1: \{"temperature":21.5/);
    expect(daemon.stdout).toMatch(/hub closed, exiting 0/);

    const cli = await run("npx", ["--offline", "edgehub", "--version"], { cwd: app, env });
    expect(cli.stdout.trim()).toBe(version);

    // Without its platform package the loader names this platform and what is missing.
    await rm(join(app, `node_modules/edgehub-${suffix}`), { recursive: true });
    const script = `
      import { MessageStore } from "edgehub";
      try { await MessageStore.open("store"); } catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }
    `;
    const missing = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: app, env });
    const err = JSON.parse(missing.stdout) as { code: string; message: string };
    expect(err.code).toBe("NATIVE_UNAVAILABLE");
    expect(err.message).toContain(`for ${suffix}`);
    expect(err.message).toContain(`edgehub-${suffix} is not installed`);
  }, 90_000);
});
