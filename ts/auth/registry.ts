/**
 * The identity registry: devices and modules with their credentials, as IoT Hub models
 * them. Persisted in the store's KV (namespace `registry`), each record sealed with the
 * hub's {@link SecretBox} so keys are encrypted at rest; held in memory for lookups.
 */
import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { parseJson } from "../json.js";
import type { MessageStore } from "../store/index.js";
import type { SecretBox } from "./secret-box.js";

/** Whether an identity may connect. */
export type IdentityStatus = "enabled" | "disabled";

/** How an identity authenticates, as IoT Hub's registry describes it. */
export interface Authentication {
  type: "sas" | "selfSigned" | "certificateAuthority" | "none";
  symmetricKey?: { primaryKey: string; secondaryKey: string };
  x509Thumbprint?: { primaryThumbprint: string | null; secondaryThumbprint: string | null };
}

/** A device identity (IoT Hub's device JSON shape). */
export interface Device {
  deviceId: string;
  generationId: string;
  etag: string;
  status: IdentityStatus;
  statusReason?: string;
  authentication: Authentication;
  capabilities: { iotEdge: boolean };
  /** Set on edge devices (`ms-azure-iot-edge://{id}-{generationId}`) and on their children. */
  deviceScope?: string;
  /** The scope of a child's parent edge device. */
  parentScopes: string[];
}

/** A module identity of a device. */
export interface Module {
  deviceId: string;
  moduleId: string;
  generationId: string;
  etag: string;
  authentication: Authentication;
  managedBy?: string;
}

const NS = "registry";
/** Modules IoT Hub creates with every edge device. */
export const EDGE_MODULES = ["$edgeAgent", "$edgeHub"] as const;
/** IoT Hub's id alphabet. */
const ID = /^[A-Za-z0-9\-:.+%_#*?!(),=@$']{1,128}$/;

function invalid(message: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** What {@link isIdentityId} accepts, for messages. */
export const ID_RULE = "1-128 characters of letters, digits and -:.+%_#*?!(),=@$'";

/** True for a device or module id IoT Hub's registry accepts: the one rule for ids from any source. */
export function isIdentityId(id: unknown): id is string {
  return typeof id === "string" && ID.test(id);
}

function checkId(what: string, id: unknown): asserts id is string {
  if (!isIdentityId(id)) throw invalid(`${what} must be ${ID_RULE}`);
}

function newKey(): string {
  return randomBytes(32).toString("base64");
}

function newGenerationId(): string {
  return `${Date.now()}${randomBytes(3).readUIntBE(0, 3).toString().padStart(8, "0")}`.slice(0, 18);
}

function newEtag(): string {
  return randomBytes(6).toString("base64url");
}

/** Fills in what IoT Hub generates when a create leaves it out: SAS keys, type "sas". */
function completeAuthentication(auth: Partial<Authentication> | undefined): Authentication {
  const type = auth?.type ?? "sas";
  if (!["sas", "selfSigned", "certificateAuthority", "none"].includes(type)) {
    throw invalid(
      `authentication.type ${JSON.stringify(type)} is not sas, selfSigned, certificateAuthority or none`,
    );
  }
  if (type === "sas") {
    const k = auth?.symmetricKey;
    for (const key of [k?.primaryKey, k?.secondaryKey]) {
      // Absent, null or "" (what the service SDKs send) means "generate one".
      if (
        key !== undefined &&
        key !== null &&
        key !== "" &&
        (typeof key !== "string" || Buffer.from(key, "base64").length < 16)
      ) {
        throw invalid("symmetric keys must be base64 of at least 16 bytes");
      }
    }
    return {
      type,
      symmetricKey: { primaryKey: k?.primaryKey || newKey(), secondaryKey: k?.secondaryKey || newKey() },
    };
  }
  if (type === "selfSigned") {
    const t = auth?.x509Thumbprint;
    if (!t?.primaryThumbprint)
      throw invalid("selfSigned authentication needs x509Thumbprint.primaryThumbprint");
    const norm = (s: string | null | undefined) => (s ? s.replace(/:/g, "").toUpperCase() : null);
    return {
      type,
      x509Thumbprint: {
        primaryThumbprint: norm(t.primaryThumbprint),
        secondaryThumbprint: norm(t.secondaryThumbprint),
      },
    };
  }
  return { type };
}

/**
 * Devices and modules of this hub. Emits `revoked` (deviceId, moduleId?) when an identity
 * is deleted, disabled, or its credentials change, so live connections can be closed.
 */
export class Registry extends EventEmitter<{ revoked: [deviceId: string, moduleId: string | undefined] }> {
  readonly #store: MessageStore;
  readonly #box: SecretBox;
  readonly #devices = new Map<string, Device>();
  readonly #modules = new Map<string, Module>();
  readonly #allowNesting: boolean;

  private constructor(store: MessageStore, box: SecretBox, allowNesting: boolean) {
    super();
    this.#store = store;
    this.#box = box;
    this.#allowNesting = allowNesting;
  }

  /**
   * Checks that `scope` is the scope of a registered edge device, which becomes the parent.
   * A child has one parent; an edge device may have a parent only when nesting is allowed.
   */
  #parentScope(scope: unknown, childIsEdge: boolean): string {
    if (childIsEdge && !this.#allowNesting) {
      throw invalid("an edge device cannot be a child unless nesting is enabled (allowNesting)");
    }
    const parent = [...this.#devices.values()].find((d) => d.capabilities.iotEdge && d.deviceScope === scope);
    if (typeof scope !== "string" || !parent)
      throw invalid(`deviceScope ${JSON.stringify(scope)} is not the scope of a registered edge device`);
    return scope;
  }

  /** Loads every identity from the store. `allowNesting` (default true, as IoT Hub): edge devices may have a parent edge device. */
  static async open(
    store: MessageStore,
    box: SecretBox,
    options: { allowNesting?: boolean } = {},
  ): Promise<Registry> {
    const r = new Registry(store, box, options.allowNesting !== false);
    for (const { key, value } of await store.kv.scan(NS)) {
      const record = parseJson(box.open(value, `${NS}/${key}`)) as Device | Module;
      if (key.startsWith("d/")) r.#devices.set((record as Device).deviceId, record as Device);
      else r.#modules.set(`${record.deviceId}/${(record as Module).moduleId}`, record as Module);
    }
    return r;
  }

  async #save(key: string, record: Device | Module): Promise<void> {
    await this.#store.kv.put(NS, key, this.#box.seal(Buffer.from(JSON.stringify(record)), `${NS}/${key}`));
  }

  /** Creates a device; keys are generated when none are given; an edge device gets its scope. */
  async createDevice(spec: Partial<Device> & { deviceId: string }): Promise<Device> {
    checkId("deviceId", spec.deviceId);
    if (this.#devices.has(spec.deviceId)) {
      throw new EdgeHubError(ErrorCodes.IDENTITY_EXISTS, `device ${spec.deviceId} already exists`);
    }
    const generationId = newGenerationId();
    const iotEdge = spec.capabilities?.iotEdge === true;
    const device: Device = {
      deviceId: spec.deviceId,
      generationId,
      etag: newEtag(),
      status: spec.status === "disabled" ? "disabled" : "enabled",
      ...(spec.statusReason ? { statusReason: spec.statusReason } : {}),
      authentication: completeAuthentication(spec.authentication),
      capabilities: { iotEdge },
      parentScopes: [],
    };
    if (iotEdge) {
      device.deviceScope = `ms-azure-iot-edge://${spec.deviceId}-${generationId}`;
      const parent = spec.parentScopes?.[0];
      if (parent) device.parentScopes = [this.#parentScope(parent, true)];
    } else if (spec.deviceScope) {
      device.deviceScope = this.#parentScope(spec.deviceScope, false);
      device.parentScopes = [device.deviceScope];
    }
    await this.#save(`d/${device.deviceId}`, device);
    this.#devices.set(device.deviceId, device);
    // As IoT Hub: an edge device comes with its runtime's two module identities.
    if (iotEdge)
      for (const moduleId of EDGE_MODULES) await this.createModule({ deviceId: device.deviceId, moduleId });
    return structuredClone(device);
  }

  getDevice(deviceId: string): Device | undefined {
    const d = this.#devices.get(deviceId);
    return d && structuredClone(d);
  }

  listDevices(): Device[] {
    return [...this.#devices.values()].map((d) => structuredClone(d));
  }

  /** Replaces a device's mutable fields (status, authentication, scope); keeps ids. */
  async updateDevice(spec: Partial<Device> & { deviceId: string }): Promise<Device> {
    const current = this.#devices.get(spec.deviceId);
    if (!current) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${spec.deviceId} not found`);
    const next: Device = {
      ...current,
      etag: newEtag(),
      status: spec.status ?? current.status,
      authentication: spec.authentication
        ? completeAuthentication(spec.authentication)
        : current.authentication,
    };
    if (spec.statusReason !== undefined) next.statusReason = spec.statusReason;
    if (!current.capabilities.iotEdge && spec.deviceScope !== undefined) {
      const scope = spec.deviceScope ? this.#parentScope(spec.deviceScope, false) : undefined;
      if (scope) next.deviceScope = scope;
      else delete next.deviceScope;
      next.parentScopes = scope ? [scope] : [];
    } else if (current.capabilities.iotEdge && spec.parentScopes !== undefined) {
      const parent = spec.parentScopes[0];
      next.parentScopes = parent ? [this.#parentScope(parent, true)] : [];
    }
    await this.#save(`d/${next.deviceId}`, next);
    this.#devices.set(next.deviceId, next);
    const authChanged = JSON.stringify(next.authentication) !== JSON.stringify(current.authentication);
    // A changed parent ends the logins its old parent made on its behalf.
    const parentChanged = next.parentScopes.join() !== current.parentScopes.join();
    if (next.status !== "enabled" || authChanged || parentChanged)
      this.emit("revoked", next.deviceId, undefined);
    return structuredClone(next);
  }

  /** Deletes a device and its modules. */
  async deleteDevice(deviceId: string): Promise<void> {
    if (!this.#devices.has(deviceId)) {
      throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${deviceId} not found`);
    }
    for (const m of this.listModules(deviceId)) await this.deleteModule(deviceId, m.moduleId);
    await this.#store.kv.delete(NS, `d/${deviceId}`);
    this.#devices.delete(deviceId);
    this.emit("revoked", deviceId, undefined);
  }

  async createModule(spec: Partial<Module> & { deviceId: string; moduleId: string }): Promise<Module> {
    checkId("moduleId", spec.moduleId);
    if (!this.#devices.has(spec.deviceId)) {
      throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${spec.deviceId} not found`);
    }
    const key = `${spec.deviceId}/${spec.moduleId}`;
    if (this.#modules.has(key))
      throw new EdgeHubError(ErrorCodes.IDENTITY_EXISTS, `module ${key} already exists`);
    const module: Module = {
      deviceId: spec.deviceId,
      moduleId: spec.moduleId,
      generationId: newGenerationId(),
      etag: newEtag(),
      authentication: completeAuthentication(spec.authentication),
      ...(spec.managedBy ? { managedBy: spec.managedBy } : {}),
    };
    await this.#save(`m/${key}`, module);
    this.#modules.set(key, module);
    return structuredClone(module);
  }

  /** Replaces a module's mutable fields (authentication, managedBy); keeps ids. */
  async updateModule(spec: Partial<Module> & { deviceId: string; moduleId: string }): Promise<Module> {
    const key = `${spec.deviceId}/${spec.moduleId}`;
    const current = this.#modules.get(key);
    if (!current) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `module ${key} not found`);
    const next: Module = {
      ...current,
      etag: newEtag(),
      authentication: spec.authentication
        ? completeAuthentication(spec.authentication)
        : current.authentication,
    };
    if (typeof spec.managedBy === "string") next.managedBy = spec.managedBy;
    await this.#save(`m/${key}`, next);
    this.#modules.set(key, next);
    if (JSON.stringify(next.authentication) !== JSON.stringify(current.authentication))
      this.emit("revoked", next.deviceId, next.moduleId);
    return structuredClone(next);
  }

  getModule(deviceId: string, moduleId: string): Module | undefined {
    const m = this.#modules.get(`${deviceId}/${moduleId}`);
    return m && structuredClone(m);
  }

  listModules(deviceId: string): Module[] {
    return [...this.#modules.values()].filter((m) => m.deviceId === deviceId).map((m) => structuredClone(m));
  }

  /**
   * Makes the registry hold exactly `devices` and `modules` as the parent sent them (an
   * edge hub's device scope): records kept as given (ids, keys, scopes, etags), the rest
   * removed. Emits `revoked` for every identity removed, disabled or whose credentials or
   * parent changed. Returns how many records changed.
   */
  async applyScope(devices: Device[], modules: Module[]): Promise<number> {
    let changed = 0;
    const wantDevices = new Map(devices.map((d) => [d.deviceId, d]));
    const wantModules = new Map(modules.map((m) => [`${m.deviceId}/${m.moduleId}`, m]));
    for (const [key, m] of this.#modules) {
      if (wantModules.has(key)) continue;
      await this.deleteModule(m.deviceId, m.moduleId);
      changed++;
    }
    for (const id of [...this.#devices.keys()]) {
      if (wantDevices.has(id)) continue;
      await this.deleteDevice(id);
      changed++;
    }
    return changed + (await this.applyIdentities(devices, modules));
  }

  /**
   * Adds or replaces `devices` and `modules` as the parent sent them (one identity an edge
   * hub asked for), removing nothing; a module's device must be here. Emits `revoked` as
   * {@link applyScope} does. Returns how many records changed.
   */
  async applyIdentities(devices: Device[], modules: Module[]): Promise<number> {
    let changed = 0;
    for (const d of devices) {
      const current = this.#devices.get(d.deviceId);
      if (current && JSON.stringify(current) === JSON.stringify(d)) continue;
      await this.#save(`d/${d.deviceId}`, d);
      this.#devices.set(d.deviceId, structuredClone(d));
      changed++;
      if (!current) continue;
      const revoked =
        d.status !== "enabled" ||
        JSON.stringify(d.authentication) !== JSON.stringify(current.authentication) ||
        d.parentScopes.join() !== current.parentScopes.join();
      if (revoked) this.emit("revoked", d.deviceId, undefined);
    }
    for (const m of modules) {
      const key = `${m.deviceId}/${m.moduleId}`;
      if (!this.#devices.has(m.deviceId))
        throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${m.deviceId} not found`);
      const current = this.#modules.get(key);
      if (current && JSON.stringify(current) === JSON.stringify(m)) continue;
      await this.#save(`m/${key}`, m);
      this.#modules.set(key, structuredClone(m));
      changed++;
      if (current && JSON.stringify(m.authentication) !== JSON.stringify(current.authentication))
        this.emit("revoked", m.deviceId, m.moduleId);
    }
    return changed;
  }

  async deleteModule(deviceId: string, moduleId: string): Promise<void> {
    const key = `${deviceId}/${moduleId}`;
    if (!this.#modules.has(key))
      throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `module ${key} not found`);
    await this.#store.kv.delete(NS, `m/${key}`);
    this.#modules.delete(key);
    this.emit("revoked", deviceId, moduleId);
  }
}
