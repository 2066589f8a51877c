/**
 * Who may touch what: the one authorization table of the hub, for MQTT topics and the
 * service API's paths alike. A caller is classified by what it is (a device, a module, an
 * edge device, one of an edge device's modules, its `$edgeHub`, the service); each action
 * names how far that kind reaches. As in IoT Edge: only modules of an edge device may call
 * methods on that edge's children, and a leaf device's module reaches nothing but itself
 * (a leaf's `deviceScope` is its parent's, so "same scope" is never a grant).
 */
import type { Registry } from "./registry.js";

/** What a caller is. */
export type CallerKind = "device" | "module" | "edge-device" | "edge-module" | "edge-hub" | "service";

/** What a caller asks to do, on a target identity. */
export type Action =
  /** Publish device-to-cloud messages as the target (MQTT `devices/{d}[/modules/{m}]/messages/events`). */
  | "telemetry"
  /** Receive the target device's cloud-to-device messages (`devices/{d}/messages/devicebound/#`). */
  | "c2d"
  /** Receive the target module's inputs (`devices/{d}/modules/{m}/inputs/#`). */
  | "module-inputs"
  /** Invoke a direct method on the target (`POST /twins/{d}[/modules/{m}]/methods`). */
  | "method"
  /** Read the target edge's device scope with its credentials (`…/$edgeHub/devicesAndModulesInDeviceScope`). */
  | "device-scope"
  /**
   * Read or write the target module's identity with its keys by the device's own credential
   * (`GET/PUT/DELETE /devices/{d}/modules/{m}`, what IoT Edge's identity service calls), or
   * by an ancestor edge's `$edgeHub` forwarding a child edge's write on its behalf.
   */
  | "module-identity"
  /** Everything else of the service API: registry, twins, C2D send, events. */
  | "service";

/**
 * How far a grant reaches:
 * `self` the caller's own identity (a device itself, a module itself);
 * `own-edge` the caller's edge device itself (the scope call);
 * `own-modules` the modules of the caller's own device (the caller a device, not a module);
 * `edge-scope` the caller's edge device, its modules, its children and their modules;
 * `descendant-modules` the modules of devices below the caller's edge device, at any depth
 *   (not the edge's own: an edge hub forwards its descendants' module writes upstream);
 * `any` every identity; `none` nothing.
 */
export type Reach =
  | "none"
  | "self"
  | "own-edge"
  | "own-modules"
  | "edge-scope"
  | "descendant-modules"
  | "any";

/** The table: caller kind × action → reach. Read top to bottom; nothing is granted elsewhere. */
export const AUTHORIZATION: Readonly<Record<CallerKind, Readonly<Record<Action, Reach>>>> = {
  device: {
    telemetry: "self",
    c2d: "self",
    "module-inputs": "none",
    method: "none",
    "device-scope": "none",
    "module-identity": "own-modules",
    service: "none",
  },
  module: {
    telemetry: "self",
    c2d: "none",
    "module-inputs": "self",
    method: "none",
    "device-scope": "none",
    "module-identity": "none",
    service: "none",
  },
  "edge-device": {
    telemetry: "self",
    c2d: "self",
    "module-inputs": "none",
    method: "none",
    // The scope is read with the `$edgeHub` token only, as Microsoft's edge hub reads it
    // (NestedDeviceScopeApiClient.cs); the device's credential fetches that module's keys.
    "device-scope": "none",
    "module-identity": "own-modules",
    service: "none",
  },
  "edge-module": {
    telemetry: "self",
    c2d: "none",
    "module-inputs": "self",
    method: "edge-scope",
    "device-scope": "none",
    "module-identity": "none",
    service: "none",
  },
  "edge-hub": {
    telemetry: "self",
    c2d: "none",
    "module-inputs": "self",
    method: "edge-scope",
    "device-scope": "own-edge",
    "module-identity": "descendant-modules",
    service: "none",
  },
  service: {
    telemetry: "none",
    c2d: "none",
    "module-inputs": "none",
    method: "any",
    "device-scope": "none",
    "module-identity": "any",
    service: "any",
  },
};

/** An identity: a device, or a module of one. */
export interface Identity {
  deviceId: string;
  moduleId?: string | undefined;
}

/** The kind of a device or module caller, as the registry has it now; undefined if unknown. */
export function callerKind(registry: Registry, caller: Identity): CallerKind | undefined {
  const device = registry.getDevice(caller.deviceId);
  if (!device) return undefined;
  const edge = device.capabilities.iotEdge;
  if (caller.moduleId === undefined) return edge ? "edge-device" : "device";
  if (!registry.getModule(caller.deviceId, caller.moduleId)) return undefined;
  if (!edge) return "module";
  return caller.moduleId === "$edgeHub" ? "edge-hub" : "edge-module";
}

/**
 * True when `caller` (an identity, or `"service"`) may do `action` on `target`; `known` is
 * the caller's kind when the caller already looked it up.
 */
export function allowed(
  registry: Registry,
  caller: Identity | "service",
  action: Action,
  target: Identity,
  known?: CallerKind,
): boolean {
  const kind = caller === "service" ? "service" : (known ?? callerKind(registry, caller));
  if (!kind) return false;
  const reach = AUTHORIZATION[kind][action];
  switch (reach) {
    case "any":
      return true;
    case "none":
      return false;
    case "self":
      return (
        caller !== "service" && target.deviceId === caller.deviceId && target.moduleId === caller.moduleId
      );
    case "own-edge":
      return caller !== "service" && target.deviceId === caller.deviceId && target.moduleId === undefined;
    case "own-modules":
      return caller !== "service" && caller.moduleId === undefined && target.deviceId === caller.deviceId;
    case "descendant-modules":
      return caller !== "service" && isBelow(registry, target.deviceId, caller.deviceId);
    case "edge-scope": {
      if (caller === "service") return false;
      if (target.deviceId === caller.deviceId) return true;
      const edge = registry.getDevice(caller.deviceId);
      const child = registry.getDevice(target.deviceId);
      // Direct children only, as IoT Edge: a nested edge's own children belong to that edge.
      return (
        edge?.capabilities.iotEdge === true &&
        edge.deviceScope !== undefined &&
        child?.parentScopes.includes(edge.deviceScope) === true
      );
    }
  }
}

/** Edges above a device at most: ServiceIdentityTree's `MaxNestingDepth`, and a bound on a cycle. */
const MAX_DEPTH = 5;

/** True when `deviceId` is a descendant of the edge device `edgeId` (a child, or a child's child, …). */
export function isBelow(registry: Registry, deviceId: string, edgeId: string): boolean {
  const edge = registry.getDevice(edgeId);
  if (!edge?.capabilities.iotEdge || !edge.deviceScope) return false;
  const byScope = new Map(
    registry
      .listDevices()
      .filter((d) => d.capabilities.iotEdge && d.deviceScope)
      .map((d) => [d.deviceScope as string, d]),
  );
  let at = registry.getDevice(deviceId);
  for (let depth = 0; at && depth <= MAX_DEPTH; depth++) {
    const parentScope = at.parentScopes[0];
    if (parentScope === undefined) return false;
    if (parentScope === edge.deviceScope) return true;
    at = byScope.get(parentScope);
  }
  return false;
}
