#!/usr/bin/env node
/**
 * `npm run pack [-- <dir>]`: writes the `edgehub` tarball and this machine's platform package
 * tarball (`edgehub-linux-x64-gnu`, napi-rs's layout) into <dir> (default `pack/`), ready for
 * `npm publish <tarball>` or `npm install <tarballs>`.
 *
 * It does what `napi create-npm-dirs` + `napi artifacts` + `napi pre-publish` do, for the one
 * platform built here (`napi artifacts` wants every target of `napi.targets` at once): the
 * platform package gets the prebuilt `native/edgehub.<platform>.node`, and the root package
 * gets every target's package as an `optionalDependency` at its own version. Both are staged
 * in <dir>/stage, so the clone's package.json and npm/ stay as committed.
 *
 * It never builds Rust: the add-on must be built already (`npm run build:native`), and must
 * be newer than every source it is built from (crates/**, Cargo.toml, Cargo.lock), else it
 * stops and says so. `--prepack-guard` is the root package's `prepack`: a plain `npm pack` or
 * `npm publish` of the clone would ship no add-on and no optional dependencies, so it stops.
 */
import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function fail(message) {
  process.stderr.write(`pack: ${message}\n`);
  process.exit(1);
}

if (process.argv.includes("--prepack-guard")) {
  // The staged copies are packed with --ignore-scripts, so this runs only for the clone
  // itself: on `npm pack` / `npm publish`, and as the pre-script of `npm run pack` (let through).
  if (process.env.npm_command === "run" || process.env.npm_command === "run-script") process.exit(0);
  fail(
    "edgehub is packed with `npm run pack` (it writes the platform package and lists it as an optional dependency); publish the tarballs it writes",
  );
}

const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const { platformSuffix, supportedPlatforms } = await import(join(root, "dist/store/native.js")).catch(() =>
  fail("dist/ is missing: run `npm run build:ts` first"),
);
const suffix = platformSuffix();
const platforms = supportedPlatforms();
if (!platforms.includes(suffix)) fail(`this machine is ${suffix}; edgehub is packaged for ${platforms.join(", ")}`);

const out = resolve(process.argv[2] ?? join(root, "pack"));
const addon = join(root, "native", `edgehub.${suffix}.node`);
if (!existsSync(addon)) fail(`${relative(root, addon)} is missing: run \`npm run build:native\` first`);

/** The newest file under `path` (a file or a directory), skipping build output. */
function newest(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return { path, mtimeMs: st.mtimeMs };
  let best = { path, mtimeMs: 0 };
  for (const name of readdirSync(path)) {
    if (name === "target" || name.startsWith(".")) continue;
    const n = newest(join(path, name));
    if (n.mtimeMs > best.mtimeMs) best = n;
  }
  return best;
}
const built = statSync(addon).mtimeMs;
for (const source of ["crates", "Cargo.toml", "Cargo.lock"].map((p) => join(root, p))) {
  const n = newest(source);
  if (n.mtimeMs > built && !process.env.EDGEHUB_PACK_ALLOW_STALE)
    fail(
      `${relative(root, n.path)} is newer than ${relative(root, addon)}: run \`npm run build:native\` (or set EDGEHUB_PACK_ALLOW_STALE=1 if the change does not touch the add-on)`,
    );
}

const stage = join(out, "stage");
rmSync(stage, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });

/** `npm pack` of a staged directory into `out`; returns the tarball's path. */
function npmPack(dir) {
  const json = execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", out], {
    cwd: dir,
    encoding: "utf8",
  });
  return join(out, JSON.parse(json)[0].filename);
}

// The platform package: npm/<platform>/ as `napi create-npm-dirs` wrote it, plus the add-on.
const platformDir = join(stage, suffix);
cpSync(join(root, "npm", suffix), platformDir, { recursive: true });
const platformPkg = JSON.parse(readFileSync(join(platformDir, "package.json"), "utf8"));
if (platformPkg.version !== pkg.version)
  fail(`npm/${suffix}/package.json is at ${platformPkg.version}, edgehub at ${pkg.version}: run \`napi version\``);
cpSync(addon, join(platformDir, platformPkg.main));

// The root package: its `files`, with every platform package as an optional dependency.
const rootDir = join(stage, "edgehub");
mkdirSync(rootDir);
for (const entry of [...pkg.files, "README.md"]) {
  if (existsSync(join(root, entry))) cpSync(join(root, entry), join(rootDir, entry), { recursive: true });
}
const { scripts: _scripts, devDependencies: _dev, ...published } = pkg;
published.optionalDependencies = Object.fromEntries(platforms.map((p) => [`edgehub-${p}`, pkg.version]));
writeFileSync(join(rootDir, "package.json"), `${JSON.stringify(published, null, 2)}\n`);

const tarballs = [npmPack(rootDir), npmPack(platformDir)];
rmSync(stage, { recursive: true, force: true });
process.stdout.write(`${tarballs.join("\n")}\n`);
