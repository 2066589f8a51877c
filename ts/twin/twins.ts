/**
 * Twins of devices and modules: desired and reported properties with `$version`, kept in
 * the store's KV (namespace `twins`, key = client id). Patches follow IoT Hub: JSON merge
 * (null deletes), nesting at most 10 deep, each section at most 32 KB, keys without
 * `.`, `$`, spaces or control characters.
 */
import { EventEmitter } from "node:events";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { MessageStore } from "../store/index.js";

/** A JSON object as twins hold it. */
export type TwinProperties = { [key: string]: unknown };

/** One section of a twin with its version. */
export interface TwinSection {
  properties: TwinProperties;
  version: number;
}

/** A stored twin. */
export interface Twin {
  desired: TwinSection;
  reported: TwinSection;
  tags: TwinProperties;
}

const NS = "twins";
const MAX_DEPTH = 10;
const MAX_SECTION_BYTES = 32 * 1024;
/** True for keys IoT Hub refuses: '.', '$', space, control characters. */
function badKey(k: string): boolean {
  for (const ch of k) {
    const c = ch.charCodeAt(0);
    if (ch === "." || ch === "$" || ch === " " || c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function invalid(message: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.TWIN_INVALID, message);
}

function isObject(v: unknown): v is TwinProperties {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Checks a patch's shape: object, depth, key names. */
function checkPatch(patch: unknown, depth = 1, path = ""): asserts patch is TwinProperties {
  if (!isObject(patch)) throw invalid(`${path || "patch"} must be a JSON object`);
  if (depth > MAX_DEPTH) throw invalid(`${path} nests deeper than ${MAX_DEPTH} levels`);
  for (const [k, v] of Object.entries(patch)) {
    if (k.length === 0 || k.length > 128 || badKey(k)) {
      throw invalid(
        `key ${JSON.stringify(k)} must be 1-128 characters without '.', '$', spaces or control characters`,
      );
    }
    if (isObject(v)) checkPatch(v, depth + 1, path ? `${path}.${k}` : k);
  }
}

/** Applies a JSON merge patch in place: objects merge, null deletes, the rest replaces. */
function merge(target: TwinProperties, patch: TwinProperties): void {
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete target[k];
    else if (isObject(v)) {
      const t = target[k];
      if (!isObject(t)) target[k] = {};
      merge(target[k] as TwinProperties, v);
    } else target[k] = v;
  }
}

function empty(): Twin {
  return { desired: { properties: {}, version: 1 }, reported: { properties: {}, version: 1 }, tags: {} };
}

/** Events: `desired` (clientId, patch with `$version`). */
export class Twins extends EventEmitter<{ desired: [clientId: string, patch: TwinProperties] }> {
  readonly #store: MessageStore;
  /** Serializes read-modify-write per twin. */
  readonly #locks = new Map<string, Promise<unknown>>();

  constructor(store: MessageStore) {
    super();
    this.#store = store;
  }

  async #load(clientId: string): Promise<Twin> {
    const raw = await this.#store.kv.get(NS, clientId);
    return raw ? (JSON.parse(raw.toString("utf8")) as Twin) : empty();
  }

  #serial<T>(clientId: string, f: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(clientId) ?? Promise.resolve();
    const next = prev.then(f, f);
    this.#locks.set(clientId, next);
    void next
      .finally(() => {
        if (this.#locks.get(clientId) === next) this.#locks.delete(clientId);
      })
      .catch(() => undefined);
    return next;
  }

  /** The twin of `clientId` (`deviceId` or `deviceId/moduleId`); empty if never written. */
  get(clientId: string): Promise<Twin> {
    return this.#load(clientId);
  }

  /** The twin as the device protocol returns it: `{ desired, reported }` with `$version`s. */
  async document(clientId: string): Promise<{ desired: TwinProperties; reported: TwinProperties }> {
    const t = await this.#load(clientId);
    return {
      desired: { ...t.desired.properties, $version: t.desired.version },
      reported: { ...t.reported.properties, $version: t.reported.version },
    };
  }

  /** Merges `patch` into one part of the twin: checked, versioned and saved under the twin's lock. */
  async #merge(clientId: string, part: "desired" | "reported" | "tags", patch: unknown): Promise<Twin> {
    checkPatch(patch);
    return this.#serial(clientId, async () => {
      const t = await this.#load(clientId);
      const next = structuredClone(part === "tags" ? t.tags : t[part].properties);
      merge(next, patch);
      if (Buffer.byteLength(JSON.stringify(next)) > MAX_SECTION_BYTES) {
        throw invalid(`${part} of ${clientId} would exceed ${MAX_SECTION_BYTES} bytes`);
      }
      if (part === "tags") t.tags = next;
      else t[part] = { properties: next, version: t[part].version + 1 };
      await this.#store.kv.put(NS, clientId, JSON.stringify(t));
      return t;
    });
  }

  /** Applies a reported patch from the device; resolves to the new reported `$version`. */
  patchReported(clientId: string, patch: unknown): Promise<number> {
    return this.#merge(clientId, "reported", patch).then((t) => t.reported.version);
  }

  /** Applies a desired patch (service side) and notifies; resolves to the new desired `$version`. */
  async patchDesired(clientId: string, patch: unknown): Promise<number> {
    const version = (await this.#merge(clientId, "desired", patch)).desired.version;
    this.emit("desired", clientId, { ...(patch as TwinProperties), $version: version });
    return version;
  }

  /** Merges a tags patch (service side). */
  async patchTags(clientId: string, patch: unknown): Promise<void> {
    await this.#merge(clientId, "tags", patch);
  }

  /** Forgets a twin (its identity was deleted). */
  delete(clientId: string): Promise<void> {
    return this.#serial(clientId, () => this.#store.kv.delete(NS, clientId));
  }
}
