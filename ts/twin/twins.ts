/**
 * Twins of devices and modules: desired and reported properties with `$version`, kept in
 * the store's KV (namespace `twins`, key = client id). Patches follow IoT Hub: JSON merge
 * (null deletes), nesting at most 10 deep, each section at most 32 KB, keys without
 * `.`, `$`, spaces or control characters. Twins hold null-prototype objects only (see
 * `ts/json.ts`): `__proto__` or `constructor` in a patch is an ordinary key, as in IoT Hub.
 */
import { EventEmitter } from "node:events";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { fromJson, isJsonObject, mergePatch, own, parseJson, record, setOwn } from "../json.js";
import { KeyedSerial } from "../keyed-serial.js";
import type { AppendPart, MessageStore } from "../store/index.js";

/**
 * A JSON object as twins hold it: a null-prototype object (nested ones too), so any key,
 * `__proto__` included, is data. Compare with `Object.keys`/`JSON.stringify`, not `instanceof`.
 */
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
/** True for keys IoT Hub refuses: '.', '$', space, control characters (C0, DEL and C1). */
function badKey(k: string): boolean {
  for (const ch of k) {
    const c = ch.charCodeAt(0);
    if (ch === "." || ch === "$" || ch === " " || c < 0x20 || (c >= 0x7f && c <= 0x9f)) return true;
  }
  return false;
}

function invalid(message: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.TWIN_INVALID, message);
}

const isObject = isJsonObject;

/** Checks a patch's shape: object, depth, key names. */
function checkPatch(patch: unknown): asserts patch is TwinProperties {
  if (!isObject(patch)) throw invalid("patch must be a JSON object");
  checkValue(patch, 1, "", true);
}

/**
 * Checks nesting (and key names if `keys`) below `v` at `depth`. Arrays count as a level
 * and the objects in them are checked too, so what a twin stores stays within
 * {@link MAX_DEPTH}, and within what `parseJson` reads back from the store.
 */
function checkValue(v: unknown, depth: number, path: string, keys: boolean): void {
  if (typeof v !== "object" || v === null) return;
  if (depth > MAX_DEPTH) throw invalid(`${path} nests deeper than ${MAX_DEPTH} levels`);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) checkValue(v[i], depth + 1, `${path}[${i}]`, keys);
    return;
  }
  for (const k of Object.keys(v)) {
    if (keys && (k.length === 0 || k.length > 128 || badKey(k))) {
      throw invalid(
        `key ${JSON.stringify(k)} must be 1-128 characters without '.', '$', spaces or control characters`,
      );
    }
    checkValue((v as TwinProperties)[k], depth + 1, path ? `${path}.${k}` : k, keys);
  }
}

/** The merge patch that turns `from` into `to` (null for removed keys); own keys only. */
function difference(from: TwinProperties, to: TwinProperties): TwinProperties {
  const out = record();
  for (const k of Object.keys(from)) if (!Object.hasOwn(to, k)) setOwn(out, k, null);
  for (const k of Object.keys(to)) {
    const v = to[k];
    const before = own(from, k);
    if (isObject(v) && isObject(before)) {
      const inner = difference(before, v);
      if (Object.keys(inner).length > 0) setOwn(out, k, inner);
    } else if (JSON.stringify(before) !== JSON.stringify(v)) setOwn(out, k, fromJson(v));
  }
  return out;
}

/** A copy of `props` without prototypes, with `$version` set (how twins are sent). */
function versioned(props: TwinProperties, version: number): TwinProperties {
  const out = fromJson(props) as TwinProperties;
  setOwn(out, "$version", version);
  return out;
}

/** `doc` without prototypes and without its `$version`, and that version if it is a number. */
function unversioned(doc: TwinProperties): { properties: TwinProperties; version: number | undefined } {
  const properties = fromJson(doc) as TwinProperties;
  const version = own(properties, "$version");
  delete properties.$version;
  return { properties, version: typeof version === "number" ? version : undefined };
}

/** The pending log of reported patches an edge hub sends to its parent. */
export interface ReportedJournal {
  /** The append that keeps `patches` of `clientId`, in order. */
  entries(clientId: string, patches: TwinProperties[]): AppendPart;
  /** Entries were stored: the log may be sent. */
  written(): void;
}

/** A reported patch waiting for its twin. */
interface ReportedPatch {
  patch: TwinProperties;
  resolve: (version: number) => void;
  reject: (err: unknown) => void;
}

function empty(): Twin {
  return {
    desired: { properties: record(), version: 1 },
    reported: { properties: record(), version: 1 },
    tags: record(),
  };
}

/**
 * Events: `desired` (clientId, patch with `$version`), and `reported` (clientId, patch,
 * version) once a device's reported patch is durable.
 */
export class Twins extends EventEmitter<{
  desired: [clientId: string, patch: TwinProperties];
  reported: [clientId: string, patch: TwinProperties, version: number];
}> {
  readonly #store: MessageStore;
  /** Serializes read-modify-write per twin. */
  readonly #serial = new KeyedSerial();
  /** Reported patches waiting for their twin, per client. */
  readonly #reported = new Map<string, ReportedPatch[]>();

  constructor(store: MessageStore) {
    super();
    this.#store = store;
  }

  async #load(clientId: string): Promise<Twin> {
    const raw = await this.#store.kv.get(NS, clientId);
    // Every section is at most MAX_DEPTH deep (checked before it is stored), well within this.
    return raw ? (parseJson(raw) as Twin) : empty();
  }

  /** The twin of `clientId` (`deviceId` or `deviceId/moduleId`); empty if never written. */
  get(clientId: string): Promise<Twin> {
    return this.#load(clientId);
  }

  /** The twin as the device protocol returns it: `{ desired, reported }` with `$version`s. */
  async document(clientId: string): Promise<{ desired: TwinProperties; reported: TwinProperties }> {
    const t = await this.#load(clientId);
    return {
      desired: versioned(t.desired.properties, t.desired.version),
      reported: versioned(t.reported.properties, t.reported.version),
    };
  }

  /** Merges `patch` into one part of the twin: checked, versioned and saved under the twin's lock. */
  async #merge(clientId: string, part: "desired" | "reported" | "tags", patch: unknown): Promise<Twin> {
    checkPatch(patch);
    return this.#serial.run(clientId, async () => {
      const t = await this.#load(clientId);
      const next = fromJson(part === "tags" ? t.tags : t[part].properties) as TwinProperties;
      mergePatch(next, patch);
      if (Buffer.byteLength(JSON.stringify(next)) > MAX_SECTION_BYTES) {
        throw invalid(`${part} of ${clientId} would exceed ${MAX_SECTION_BYTES} bytes`);
      }
      if (part === "tags") t.tags = next;
      else t[part] = { properties: next, version: t[part].version + 1 };
      await this.#store.kv.put(NS, clientId, JSON.stringify(t));
      return t;
    });
  }

  /**
   * Where reported patches are also kept (an edge hub's pending log for its parent): they
   * are stored with the twin, in one write, before {@link Twins.patchReported} resolves.
   */
  journal: ReportedJournal | undefined;

  /**
   * Applies a reported patch from the device; resolves to the new reported `$version`.
   * Patches of one client that arrive while its twin is being written are applied together
   * once it is free: one read, one write and one journal append for all of them, each
   * patch still its own version (in arrival order) and refused alone if it breaks a limit.
   */
  async patchReported(clientId: string, input: unknown): Promise<number> {
    checkPatch(input);
    // The caller's object is not kept: the journal and the `reported` event get this copy.
    const patch = fromJson(input) as TwinProperties;
    return new Promise<number>((resolve, reject) => {
      const waiting = this.#reported.get(clientId);
      if (waiting) {
        waiting.push({ patch, resolve, reject });
        return;
      }
      this.#reported.set(clientId, [{ patch, resolve, reject }]);
      this.#serial.run(clientId, () => this.#applyReported(clientId)).catch(() => undefined);
    });
  }

  async #applyReported(clientId: string): Promise<void> {
    const batch = this.#reported.get(clientId) ?? [];
    // Patches from here on wait for the next turn of the lock.
    this.#reported.delete(clientId);
    const accepted: Array<{ p: ReportedPatch; version: number }> = [];
    try {
      const t = await this.#load(clientId);
      let { properties, version } = t.reported;
      for (const p of batch) {
        const next = fromJson(properties) as TwinProperties;
        mergePatch(next, p.patch);
        if (Buffer.byteLength(JSON.stringify(next)) > MAX_SECTION_BYTES) {
          p.reject(invalid(`reported of ${clientId} would exceed ${MAX_SECTION_BYTES} bytes`));
          continue;
        }
        properties = next;
        version++;
        accepted.push({ p, version });
      }
      if (accepted.length === 0) return;
      t.reported = { properties, version };
      const value = JSON.stringify(t);
      const journal = this.journal;
      if (journal) {
        // The twin and its pending patches in one write: both or neither.
        const part = journal.entries(
          clientId,
          accepted.map((a) => a.p.patch),
        );
        await this.#store.appendParts([part], [{ ns: NS, key: clientId, value }]);
        journal.written();
      } else await this.#store.kv.put(NS, clientId, value);
      for (const a of accepted) {
        a.p.resolve(a.version);
        this.emit("reported", clientId, a.p.patch, a.version);
      }
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  /** The parent stored reported properties as `version`: its version replaces the local one. */
  async adoptReportedVersion(clientId: string, version: number): Promise<void> {
    await this.#serial.run(clientId, async () => {
      const t = await this.#load(clientId);
      if (t.reported.version === version) return;
      t.reported.version = version;
      await this.#store.kv.put(NS, clientId, JSON.stringify(t));
    });
  }

  /**
   * The parent's desired properties (`$version` included), whole: replaces the local ones
   * when they differ, and notifies the difference as one patch (null for removed keys)
   * with the parent's `$version`. Upstream wins for desired.
   */
  async adoptDesired(clientId: string, desired: TwinProperties): Promise<boolean> {
    const { properties, version } = unversioned(desired);
    // IoT Hub never sends deeper; a parent that does is refused rather than stored.
    checkValue(properties, 1, `desired of ${clientId}`, false);
    const patch = await this.#serial.run(clientId, async () => {
      const t = await this.#load(clientId);
      const diff = difference(t.desired.properties, properties);
      if (Object.keys(diff).length === 0 && (version === undefined || version === t.desired.version))
        return undefined;
      t.desired = { properties, version: version ?? t.desired.version + 1 };
      await this.#store.kv.put(NS, clientId, JSON.stringify(t));
      return versioned(diff, t.desired.version);
    });
    if (patch) this.emit("desired", clientId, patch);
    return patch !== undefined;
  }

  /** A desired patch from the parent with its `$version`: merged, then notified as is. */
  async adoptDesiredPatch(clientId: string, patch: TwinProperties): Promise<void> {
    const { properties: changes, version } = unversioned(patch);
    const notified = await this.#serial.run(clientId, async () => {
      const t = await this.#load(clientId);
      mergePatch(t.desired.properties, changes);
      checkValue(t.desired.properties, 1, `desired of ${clientId}`, false);
      t.desired.version = version ?? t.desired.version + 1;
      await this.#store.kv.put(NS, clientId, JSON.stringify(t));
      return versioned(changes, t.desired.version);
    });
    this.emit("desired", clientId, notified);
  }

  /** Client ids that have a twin here. */
  async clientIds(): Promise<string[]> {
    return (await this.#store.kv.scan(NS)).map((e) => e.key);
  }

  /** Applies a desired patch (service side) and notifies; resolves to the new desired `$version`. */
  async patchDesired(clientId: string, patch: unknown): Promise<number> {
    const version = (await this.#merge(clientId, "desired", patch)).desired.version;
    this.emit("desired", clientId, versioned(patch as TwinProperties, version));
    return version;
  }

  /** Merges a tags patch (service side). */
  async patchTags(clientId: string, patch: unknown): Promise<void> {
    await this.#merge(clientId, "tags", patch);
  }

  /** Forgets a twin (its identity was deleted). */
  delete(clientId: string): Promise<void> {
    return this.#serial.run(clientId, () => this.#store.kv.delete(NS, clientId));
  }
}
