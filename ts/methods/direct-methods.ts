/**
 * Direct methods: a call is published to the device on `$iothub/methods/POST/{name}/?$rid=…`
 * and completes when the device answers on `$iothub/methods/res/{status}/?$rid=…`.
 * As IoT Hub: a call to a client that is not connected (or not listening for methods)
 * waits up to its connect timeout (default 0) for it to subscribe, then fails with 404; a
 * call delivered fails with 504 when no answer comes within the response timeout.
 *
 * A pending call (waiting for its client to listen, or for its answer) is held up to 300 s,
 * so pending calls are capped per target, per caller and in payload bytes: past a cap a call
 * is answered at once with IoT Hub's 429 `ThrottleBacklogLimitExceeded` (429002), and the
 * counts of the maps below never exceed the calls pending.
 */

import { DEFAULT_LIMITS } from "../config/limits.js";

/** What a method call returns. */
export interface MethodResult {
  status: number;
  payload: unknown;
}

/** Options of a call, in seconds as IoT Hub's API takes them. */
export interface MethodCall {
  methodName: string;
  payload?: unknown;
  /** How long to wait for the answer once the call is delivered: 5 to 300, default 30. */
  responseTimeoutInSeconds?: number;
  /** How long to wait for the client to connect and listen: 0 (default) to 300. */
  connectTimeoutInSeconds?: number;
}

/** The part of a connection methods need. */
export interface MethodTarget {
  listensForMethods(): boolean;
  /** Sends the call `rid` of method `name` (MQTT: on `$iothub/methods/POST/{name}/?$rid={rid}`). */
  callMethod(name: string, rid: string, payload: Buffer): void;
}

/** Caps on pending calls (the `limits` config keys of the same names). */
export interface MethodLimits {
  /** Calls pending to one client id (device or module). */
  maxPendingMethodCallsPerTarget: number;
  /** Calls pending from one caller (the service, a module, the parent). */
  maxPendingMethodCallsPerCaller: number;
  /** Request payload bytes (and method names) held by all pending calls together. */
  maxPendingMethodBytes: number;
}

/** Pending calls and those refused past a cap since the hub started (`status().methods`). */
export interface MethodStats {
  pending: number;
  pendingBytes: number;
  refused: { perTarget: number; perCaller: number; bytes: number };
}

/** Who calls, for the per-caller cap: the service API's callers share one name. */
export const SERVICE_CALLER = "$service";
/** The parent hub's calls relayed here (ts/upstream/method-relay.ts). */
export const PARENT_CALLER = "$parent";

interface Pending {
  clientId: string;
  resolve: (r: MethodResult) => void;
  timer: NodeJS.Timeout;
}

const MAX_TIMEOUT_SECS = 300;

/** A method payload from the wire: JSON as JSON, other text as a string, nothing as null. */
export function methodPayload(bytes: Buffer): unknown {
  if (bytes.length === 0) return null;
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return bytes.toString("utf8");
  }
}

/** Tracks calls in flight. */
export class DirectMethods {
  readonly #find: (clientId: string) => MethodTarget | undefined;
  readonly #pending = new Map<string, Pending>();
  /** Calls waiting for their client to listen, by client id. */
  readonly #connecting = new Map<string, Set<() => void>>();
  readonly #limits: MethodLimits;
  /** Pending calls per target and per caller; an entry goes when its count reaches 0. */
  readonly #perTarget = new Map<string, number>();
  readonly #perCaller = new Map<string, number>();
  #pendingCalls = 0;
  #pendingBytes = 0;
  readonly #refused = { perTarget: 0, perCaller: 0, bytes: 0 };
  #next = 0;

  /**
   * @param find the connected target of a client id, if any.
   * @param limits the caps on pending calls (default: the `limits` config's defaults).
   */
  constructor(find: (clientId: string) => MethodTarget | undefined, limits: MethodLimits = DEFAULT_LIMITS) {
    this.#find = find;
    this.#limits = limits;
  }

  /**
   * Invokes a method on `clientId` (`deviceId` or `deviceId/moduleId`) for `caller`; 429 at
   * once when a cap on pending calls is reached.
   */
  invoke(clientId: string, call: MethodCall, caller: string = SERVICE_CALLER): Promise<MethodResult> {
    // Only the serialized payload is kept while the call waits, and counted.
    const body = Buffer.from(JSON.stringify(call.payload ?? null));
    const bytes = body.length + Buffer.byteLength(call.methodName);
    const refused = this.#reserve(clientId, caller, bytes);
    if (refused) return Promise.resolve(refused);
    const { methodName, responseTimeoutInSeconds, connectTimeoutInSeconds } = call;
    return this.#call(clientId, methodName, body, responseTimeoutInSeconds, connectTimeoutInSeconds).finally(
      () => this.#release(clientId, caller, bytes),
    );
  }

  /** Counts a call in, or answers why not. */
  #reserve(clientId: string, caller: string, bytes: number): MethodResult | undefined {
    const l = this.#limits;
    let why: keyof MethodStats["refused"] | undefined;
    if ((this.#perTarget.get(clientId) ?? 0) >= l.maxPendingMethodCallsPerTarget) why = "perTarget";
    else if ((this.#perCaller.get(caller) ?? 0) >= l.maxPendingMethodCallsPerCaller) why = "perCaller";
    else if (this.#pendingBytes + bytes > l.maxPendingMethodBytes) why = "bytes";
    if (why) {
      this.#refused[why]++;
      const message =
        why === "perTarget"
          ? `too many method calls pending to ${clientId} (${l.maxPendingMethodCallsPerTarget})`
          : why === "perCaller"
            ? `too many method calls pending from this caller (${l.maxPendingMethodCallsPerCaller})`
            : `pending method calls hold too many payload bytes (${l.maxPendingMethodBytes})`;
      return { status: 429, payload: { errorCode: 429002, message } };
    }
    this.#perTarget.set(clientId, (this.#perTarget.get(clientId) ?? 0) + 1);
    this.#perCaller.set(caller, (this.#perCaller.get(caller) ?? 0) + 1);
    this.#pendingCalls++;
    this.#pendingBytes += bytes;
    return undefined;
  }

  #release(clientId: string, caller: string, bytes: number): void {
    for (const [map, key] of [
      [this.#perTarget, clientId],
      [this.#perCaller, caller],
    ] as const) {
      const n = (map.get(key) ?? 1) - 1;
      if (n > 0) map.set(key, n);
      else map.delete(key);
    }
    this.#pendingCalls--;
    this.#pendingBytes -= bytes;
  }

  async #call(
    clientId: string,
    methodName: string,
    body: Buffer,
    responseTimeoutInSeconds: number | undefined,
    connectTimeoutInSeconds: number | undefined,
  ): Promise<MethodResult> {
    let target = this.#find(clientId);
    if (!target?.listensForMethods()) {
      const connect = Math.min(Math.max(connectTimeoutInSeconds ?? 0, 0), MAX_TIMEOUT_SECS);
      if (connect > 0) {
        await this.#listened(clientId, connect * 1000);
        target = this.#find(clientId);
      }
      if (!target?.listensForMethods()) {
        return {
          status: 404,
          payload: {
            errorCode: 404103,
            message: `${clientId} is not connected or not listening for methods`,
          },
        };
      }
    }
    const timeout = Math.min(Math.max(responseTimeoutInSeconds ?? 30, 5), MAX_TIMEOUT_SECS);
    const rid = (++this.#next).toString(16);
    const listening = target;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending.delete(rid);
        resolve({
          status: 504,
          payload: { errorCode: 504101, message: `${clientId} did not answer in ${timeout} s` },
        });
      }, timeout * 1000);
      this.#pending.set(rid, { clientId, resolve, timer });
      listening.callMethod(methodName, rid, body);
    });
  }

  /** Resolves when `clientId` subscribes to its methods, or after `ms`. */
  #listened(clientId: string, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let waiters = this.#connecting.get(clientId);
      if (!waiters) {
        waiters = new Set();
        this.#connecting.set(clientId, waiters);
      }
      const set = waiters;
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.#connecting.get(clientId) === set) this.#connecting.delete(clientId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  /** `clientId` subscribed to its methods: calls waiting for it to connect go now. */
  listening(clientId: string): void {
    for (const done of [...(this.#connecting.get(clientId) ?? [])]) done();
  }

  /** A device's answer; ignored unless it matches a call to that same client. */
  respond(clientId: string, rid: string, status: number, body: Buffer): void {
    const p = this.#pending.get(rid);
    if (!p || p.clientId !== clientId) return;
    this.#pending.delete(rid);
    clearTimeout(p.timer);
    p.resolve({ status, payload: methodPayload(body) });
  }

  /** Fails every call to `clientId` with 404 (it disconnected). */
  disconnected(clientId: string): void {
    for (const [rid, p] of this.#pending) {
      if (p.clientId !== clientId) continue;
      this.#pending.delete(rid);
      clearTimeout(p.timer);
      p.resolve({ status: 404, payload: { errorCode: 404103, message: `${clientId} disconnected` } });
    }
  }

  /** Calls pending now and calls refused past a cap. */
  stats(): MethodStats {
    return { pending: this.#pendingCalls, pendingBytes: this.#pendingBytes, refused: { ...this.#refused } };
  }

  /** Fails every call (the hub is closing), those waiting for their client with 404. */
  close(): void {
    for (const p of this.#pending.values()) this.disconnected(p.clientId);
    for (const waiters of [...this.#connecting.values()]) for (const done of [...waiters]) done();
  }
}
