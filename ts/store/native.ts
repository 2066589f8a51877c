/**
 * Loads the napi-rs add-on for this platform and types its surface. Internal: the public
 * API is {@link MessageStore}, which wraps every call and turns native errors into
 * {@link EdgeHubError}s.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EdgeHubError, ErrorCodes, isErrorCode } from "../errors.js";

export interface NativeOptions {
  durability: string;
  defaultTtlSecs: number;
  maxSizeBytes: number;
  whenFull: string;
}

export interface NativeQueueStats {
  name: string;
  count: number;
  bytes: number;
  head: number;
  tail: number;
  ackedUpTo?: number | null;
  oldestEnqueuedAt?: number | null;
}

export interface NativeStats {
  queues: NativeQueueStats[];
  count: number;
  bytes: number;
  maxSizeBytes: number;
  expired: number;
  dropped: number;
}

export interface NativeStore {
  append(queues: string[], batch: Uint8Array, count: number): Promise<number[]>;
  appendParts(
    queues: string[][],
    batches: Uint8Array[],
    counts: number[],
    puts: Array<{ ns: string; key: string; value: Uint8Array }>,
  ): Promise<number[][]>;
  ack(queue: string, offset: number): Promise<void>;
  configure(defaultTtlSecs: number, maxSizeBytes: number, whenFull: string): Promise<void>;
  read(queue: string, from: number, limit: number, maxBytes: number): Promise<Buffer>;
  stats(): NativeStats;
  kvPut(ns: string, key: string, value: Uint8Array): Promise<void>;
  kvDelete(ns: string, key: string): Promise<void>;
  kvGet(ns: string, key: string): Promise<Buffer | null>;
  kvScan(ns: string, prefix: string): Promise<Array<{ key: string; value: Buffer }>>;
  close(): Promise<void>;
}

interface Binding {
  openStore(path: string, options: NativeOptions): Promise<NativeStore>;
}

/**
 * napi-rs's name for this platform (`linux-x64-gnu`): the suffix of the add-on's file and of
 * its platform package. glibc or musl is read from the process report, as napi-rs's loader does.
 */
export function platformSuffix(): string {
  const { platform, arch } = process;
  if (platform === "linux") {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return `linux-${arch}-${report?.header?.glibcVersionRuntime ? "gnu" : "musl"}`;
  }
  return `${platform}-${arch}`;
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

/** Turns an error from the add-on (`CODE: message`) into an {@link EdgeHubError}. */
export function fromNative(err: unknown): EdgeHubError {
  if (err instanceof EdgeHubError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const m = /^([A-Z_]+): ([\s\S]*)$/.exec(message);
  if (m?.[1] && m[2] !== undefined && isErrorCode(m[1])) {
    return new EdgeHubError(m[1], m[2], { cause: err });
  }
  return new EdgeHubError(ErrorCodes.STORE_IO, message, { cause: err });
}
