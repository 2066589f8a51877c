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

/** The platform suffix napi-rs gives the add-on (`--platform`). */
function platformSuffix(): string {
  const { platform, arch } = process;
  if (platform === "linux") {
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
    return `linux-${arch}-${report?.header?.glibcVersionRuntime ? "gnu" : "musl"}`;
  }
  return `${platform}-${arch}`;
}

let binding: Binding | undefined;

/** The add-on, loaded on first use. */
export function native(): Binding {
  if (binding) return binding;
  const file = `edgehub.${platformSuffix()}.node`;
  // dist/store/native.js and ts/store/native.ts both sit two levels below the package root.
  const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
  const path = join(root, "native", file);
  if (!existsSync(path)) {
    throw new EdgeHubError(
      ErrorCodes.NATIVE_UNAVAILABLE,
      `edgehub's native add-on ${file} is missing at ${path}; this platform is not prebuilt, run \`npm run build:native\``,
    );
  }
  binding = createRequire(import.meta.url)(path) as Binding;
  return binding;
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
