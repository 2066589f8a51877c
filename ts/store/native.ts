/**
 * Loads the napi-rs add-on for this platform and types its surface. Internal: the public
 * API is {@link MessageStore}, which wraps every call and turns native errors into
 * {@link EdgeHubError}s.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EdgeHubError, ErrorCodes, isErrorCode } from "../errors.js";

export type { NativeStore } from "./binding.js";

/**
 * The add-on's surface, as `napi build --dts` generates it from crates/node (committed as
 * binding.d.ts, refreshed by `npm run build:native`): a Rust change the facade misses fails
 * the typecheck.
 */
type Binding = typeof import("./binding.js");

/**
 * napi-rs's name for this platform (`linux-x64-gnu`): the suffix of the add-on's file and of
 * its platform package. glibc or musl is told as napi-rs's loader does: by `/usr/bin/ldd`
 * first, the process report only when that cannot be read (a report costs about 1 MB of
 * resident memory for the life of the process).
 */
export function platformSuffix(): string {
  const { platform, arch } = process;
  if (platform === "linux") return `linux-${arch}-${isMusl() ? "musl" : "gnu"}`;
  return `${platform}-${arch}`;
}

function isMusl(): boolean {
  try {
    return readFileSync("/usr/bin/ldd", "utf8").includes("musl");
  } catch {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return !report?.header?.glibcVersionRuntime;
  }
}

/** Rust's CPU names as Node's `process.arch` spells them (napi-rs's `parseTriple`). */
const NODE_ARCH: Readonly<Record<string, string>> = { x86_64: "x64", aarch64: "arm64", i686: "ia32" };

/**
 * The platforms edgehub is prebuilt for, in napi-rs's names, from `napi.targets` in
 * package.json (the one list of platforms): `x86_64-unknown-linux-gnu` is `linux-x64-gnu`.
 */
export function supportedPlatforms(): string[] {
  const pkg = createRequire(import.meta.url)(join(packageRoot(), "package.json")) as {
    napi?: { targets?: string[] };
  };
  return (pkg.napi?.targets ?? []).map((triple) => {
    const [cpu = "", , os = "", abi] = triple.split("-");
    return [os, NODE_ARCH[cpu] ?? cpu, abi].filter((p) => p !== undefined).join("-");
  });
}

/** dist/store/native.js and ts/store/native.ts both sit two levels below the package root. */
function packageRoot(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..");
}

let binding: Binding | undefined;

/**
 * The add-on, loaded on first use: the local build output (`native/`, in a clone after
 * `npm run build:native`) when there is one, else the platform package
 * (`edgehub-linux-x64-gnu`, an optional dependency of the published package). Throws
 * NATIVE_UNAVAILABLE naming this platform and the supported ones when neither is there.
 */
export function native(): Binding {
  if (binding) return binding;
  const suffix = platformSuffix();
  const file = `edgehub.${suffix}.node`;
  const require = createRequire(import.meta.url);
  // A clone's own build wins: it is what the developer just compiled.
  const local = join(packageRoot(), "native", file);
  if (existsSync(local)) {
    binding = require(local) as Binding;
    return binding;
  }
  const pkg = `edgehub-${suffix}`;
  try {
    binding = require(pkg) as Binding;
    return binding;
  } catch (err) {
    const missing =
      (err as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" &&
      (err as Error).message.includes(`'${pkg}'`);
    const supported = supportedPlatforms();
    const why = missing
      ? supported.includes(suffix)
        ? `the package ${pkg} is not installed (npm skips optional dependencies with --omit=optional or --no-optional; reinstall without it)`
        : `edgehub is prebuilt for ${supported.join(", ")}, not for ${suffix}`
      : `the package ${pkg} did not load: ${(err as Error).message}`;
    throw new EdgeHubError(
      ErrorCodes.NATIVE_UNAVAILABLE,
      `edgehub's native add-on for ${suffix} is unavailable: ${why}. In a clone, \`npm run build:native\` builds ${file} (needs Rust and libclang)`,
      { cause: err },
    );
  }
}

/**
 * Turns what the add-on throws into an {@link EdgeHubError}: its errors carry the store's
 * code as `err.code`; anything else (napi refusing an argument the facade let through) is
 * STORE_IO with napi's own code in the message.
 */
export function fromNative(err: unknown): EdgeHubError {
  if (err instanceof EdgeHubError) return err;
  if (!(err instanceof Error)) return new EdgeHubError(ErrorCodes.STORE_IO, String(err), { cause: err });
  const code: unknown = (err as NodeJS.ErrnoException).code;
  if (typeof code === "string" && isErrorCode(code))
    return new EdgeHubError(code, err.message, { cause: err });
  const detail = typeof code === "string" ? ` (${code})` : "";
  return new EdgeHubError(ErrorCodes.STORE_IO, `${err.message}${detail}`, { cause: err });
}
