/**
 * This edge's `$edgeHub` module identity on its parent: fetched with the edge *device's*
 * own credential, as IoT Edge's identity service does (Azure/iot-identity-service
 * `identity/aziot-hub-client-async/src/lib.rs#Client::get_module`, `#Client::request`):
 * `GET /devices/{edge}/modules/%24edgeHub?api-version=2017-11-08-preview` with a SAS token
 * for `{hub}/devices/{edge}` signed by the device key, or the device's X.509 certificate on
 * TLS. Its keys sign every upstream login and scope call (`credentials.ts`).
 *
 * The keys are kept sealed (ts/auth/secret-box.ts, bound to the hub name and edge id) in a
 * file of the data dir written with ts/durable-file.ts, so a restart while the parent is
 * away still has them. They are fetched when absent, and again when the parent refuses a
 * login made with them (regenerated upstream), at most once per {@link REFETCH_MIN_MS}.
 */
import { EventEmitter } from "node:events";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { isIdentityId } from "../auth/registry.js";
import type { SecretBox } from "../auth/secret-box.js";
import type { ParentConfig } from "../config/config.js";
import { writeDurable } from "../durable-file.js";
import { isJsonObject, own, parseJson } from "../json.js";
import type { Logger } from "../log.js";
import type { ParentCredentials } from "./credentials.js";
import { parentEndpoint, scopeCall } from "./scope-http.js";

/** The module whose keys the edge signs with. */
export const EDGE_HUB_MODULE = "$edgeHub";
/** The identity service's api-version for the module identity API (IS `lib.rs#Client::get_module`). */
export const MODULE_API_VERSION = "2017-11-08-preview";
/** The sealed file in the data dir. */
export const MODULE_KEYS_FILE = "edgehub-module.sealed";
/** Least time between two refetches asked for by refused logins. */
export const REFETCH_MIN_MS = 10_000;
/** Longest body of the parent's answer. */
const MAX_BODY_BYTES = 64 * 1024;
/** First retry of a failed fetch while no keys are known; doubles up to the parent's backoff cap. */
const FIRST_RETRY_MS = 200;

/** The `$edgeHub` keys as held here. */
export interface ModuleKeys {
  generationId: string;
  primaryKey: string;
  secondaryKey: string;
}

/** A symmetric key the hub can sign with: base64 of at least 16 bytes. */
function isKey(v: unknown): v is string {
  return typeof v === "string" && /^[A-Za-z0-9+/]+={0,2}$/.test(v) && Buffer.from(v, "base64").length >= 16;
}

/** The keys in the parent's module JSON (`moduleJson` in ts/service/shapes.ts), checked; throws why not. */
export function moduleKeysOf(body: unknown, deviceId: string): ModuleKeys {
  if (!isJsonObject(body)) throw new Error("the module identity is not a JSON object");
  if (own(body, "deviceId") !== deviceId || own(body, "moduleId") !== EDGE_HUB_MODULE)
    throw new Error(`the parent answered another module than ${deviceId}/${EDGE_HUB_MODULE}`);
  const auth = own(body, "authentication");
  const keys = own(auth, "symmetricKey");
  const primaryKey = own(keys, "primaryKey");
  const secondaryKey = own(keys, "secondaryKey");
  if (own(auth, "type") !== "sas" || !isKey(primaryKey) || !isKey(secondaryKey))
    throw new Error(`${deviceId}/${EDGE_HUB_MODULE} has no SAS keys on the parent`);
  const generationId = own(body, "generationId");
  return {
    generationId: typeof generationId === "string" ? generationId.slice(0, 64) : "",
    primaryKey,
    secondaryKey,
  };
}

/** Fetches, seals and holds the `$edgeHub` keys. Emits `keys` when new keys are in hand. */
export class EdgeHubModule extends EventEmitter<{ keys: [ModuleKeys] }> {
  readonly #parent: ParentConfig;
  readonly #credentials: ParentCredentials;
  readonly #box: SecretBox;
  readonly #file: string;
  readonly #log: Logger;
  #keys: ModuleKeys | undefined;
  #fetching: Promise<boolean> | undefined;
  #lastRefetchAt = Number.NEGATIVE_INFINITY;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    parent: ParentConfig,
    credentials: ParentCredentials,
    box: SecretBox,
    dataDir: string,
    log: Logger,
  ) {
    super();
    this.#parent = parent;
    this.#credentials = credentials;
    this.#box = box;
    this.#file = join(dataDir, MODULE_KEYS_FILE);
    this.#log = log;
  }

  /** The keys in hand, if any. */
  get keys(): ModuleKeys | undefined {
    return this.#keys;
  }

  /** Sealed for this hub name and edge: keys of another edge (config changed) never open. */
  get #context(): string {
    return `upstream/${this.#parent.hubHostname}/${this.#parent.deviceId}/${EDGE_HUB_MODULE}`;
  }

  /** Reads the sealed keys from the data dir; false when there are none (or none for this edge). */
  async load(): Promise<boolean> {
    let sealed: Buffer;
    try {
      sealed = await readFile(this.#file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
    try {
      const keys = parseJson(this.#box.open(sealed, this.#context).toString("utf8")) as ModuleKeys;
      if (!isKey(keys.primaryKey) || !isKey(keys.secondaryKey)) throw new Error("no keys in the sealed file");
      this.#keys = keys;
      this.emit("keys", keys);
      return true;
    } catch (err) {
      // Another edge's keys, a changed key file or a damaged file: fetched again.
      this.#log.log("warn", "edgehub-keys-unreadable", { file: this.#file, reason: (err as Error).message });
      return false;
    }
  }

  /**
   * Fetches in the background until keys are in hand, retrying with backoff (capped at
   * `parent.maxBackoffMs`) while the parent is away; nothing to do when they are already.
   */
  ensure(): void {
    if (this.#keys || this.#closed) return;
    const attempt = (delay: number) => {
      void this.fetch().then((ok) => {
        if (ok || this.#closed || this.#keys) return;
        const next = Math.min(delay * 2, Math.max(FIRST_RETRY_MS, this.#parent.maxBackoffMs));
        this.#retry = setTimeout(() => attempt(next), delay * (0.5 + Math.random() * 0.5));
        this.#retry.unref();
      });
    };
    attempt(FIRST_RETRY_MS);
  }

  /**
   * A login signed with the keys in hand was refused as unauthorized: they may have been
   * regenerated upstream. Refetches, at most once per {@link REFETCH_MIN_MS}; resolves true
   * when the fetched keys differ from those in hand.
   */
  async refused(): Promise<boolean> {
    const now = Date.now();
    if (this.#fetching === undefined && now - this.#lastRefetchAt < REFETCH_MIN_MS) return false;
    this.#lastRefetchAt = now;
    const before = this.#keys;
    await this.fetch();
    return this.#keys !== before;
  }

  /** One fetch (joins one running); true when keys are in hand after it. */
  fetch(): Promise<boolean> {
    this.#fetching ??= this.#fetch().finally(() => {
      this.#fetching = undefined;
    });
    return this.#fetching;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
  }

  async #fetch(): Promise<boolean> {
    let keys: ModuleKeys;
    try {
      keys = moduleKeysOf(await this.#get(), this.#parent.deviceId);
    } catch (err) {
      this.#log.log("warn", "edgehub-keys-fetch-failed", { reason: (err as Error).message });
      return this.#keys !== undefined;
    }
    const same = this.#keys?.primaryKey === keys.primaryKey && this.#keys.secondaryKey === keys.secondaryKey;
    if (same) return true;
    await writeDurable(this.#file, this.#box.seal(Buffer.from(JSON.stringify(keys)), this.#context), 0o600);
    this.#keys = keys;
    this.#log.log("info", "edgehub-keys-fetched", {
      module: `${this.#parent.deviceId}/${EDGE_HUB_MODULE}`,
      generationId: keys.generationId,
    });
    this.emit("keys", keys);
    return true;
  }

  /** The module JSON, by the device's own credential (the one HTTPS exchange with the parent). */
  #get(): Promise<unknown> {
    const deviceId = this.#parent.deviceId;
    if (!isIdentityId(deviceId)) return Promise.reject(new Error("parent.deviceId is not an IoT Hub id"));
    // Ids escaped as a path segment (IS escapes `$` as %24 too).
    const path = `/devices/${encodeURIComponent(deviceId)}/modules/${encodeURIComponent(EDGE_HUB_MODULE)}?api-version=${MODULE_API_VERSION}`;
    // The device's certificate is presented when it has one (an X.509 edge device): `tls()`.
    return scopeCall(parentEndpoint(this.#parent, this.#credentials), {
      method: "GET",
      path,
      token: this.#credentials.deviceToken(),
      headers: { accept: "application/json" },
      maxBytes: MAX_BODY_BYTES,
    });
  }
}
