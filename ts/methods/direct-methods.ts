/**
 * Direct methods: a call is published to the device on `$iothub/methods/POST/{name}/?$rid=…`
 * and completes when the device answers on `$iothub/methods/res/{status}/?$rid=…`.
 * As IoT Hub: a call to a client that is not connected (or not listening for methods)
 * waits up to its connect timeout (default 0) for it to subscribe, then fails with 404; a
 * call delivered fails with 504 when no answer comes within the response timeout.
 */

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
  deliver(topic: string, payload: Buffer): void;
}

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
  #next = 0;

  /** @param find the connected target of a client id, if any. */
  constructor(find: (clientId: string) => MethodTarget | undefined) {
    this.#find = find;
  }

  /** Invokes a method on `clientId` (`deviceId` or `deviceId/moduleId`). */
  async invoke(clientId: string, call: MethodCall): Promise<MethodResult> {
    let target = this.#find(clientId);
    if (!target?.listensForMethods()) {
      const connect = Math.min(Math.max(call.connectTimeoutInSeconds ?? 0, 0), MAX_TIMEOUT_SECS);
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
    const timeout = Math.min(Math.max(call.responseTimeoutInSeconds ?? 30, 5), MAX_TIMEOUT_SECS);
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
      const body = Buffer.from(JSON.stringify(call.payload ?? null));
      listening.deliver(`$iothub/methods/POST/${encodeURIComponent(call.methodName)}/?$rid=${rid}`, body);
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

  /** Fails every call (the hub is closing), those waiting for their client with 404. */
  close(): void {
    for (const p of this.#pending.values()) this.disconnected(p.clientId);
    for (const waiters of [...this.#connecting.values()]) for (const done of [...waiters]) done();
  }
}
