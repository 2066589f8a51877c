/**
 * Direct methods: a call is published to the device on `$iothub/methods/POST/{name}/?$rid=…`
 * and completes when the device answers on `$iothub/methods/res/{status}/?$rid=…`.
 * As IoT Hub: 404 when the device is not connected (or not listening for methods),
 * 504 when it does not answer within the response timeout.
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
  responseTimeoutInSeconds?: number;
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
  #next = 0;

  /** @param find the connected target of a client id, if any. */
  constructor(find: (clientId: string) => MethodTarget | undefined) {
    this.#find = find;
  }

  /** Invokes a method on `clientId` (`deviceId` or `deviceId/moduleId`). */
  invoke(clientId: string, call: MethodCall): Promise<MethodResult> {
    const target = this.#find(clientId);
    if (!target?.listensForMethods()) {
      return Promise.resolve({
        status: 404,
        payload: { errorCode: 404103, message: `${clientId} is not connected or not listening for methods` },
      });
    }
    const timeout = Math.min(Math.max(call.responseTimeoutInSeconds ?? 30, 5), MAX_TIMEOUT_SECS);
    const rid = (++this.#next).toString(16);
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
      target.deliver(`$iothub/methods/POST/${encodeURIComponent(call.methodName)}/?$rid=${rid}`, body);
    });
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

  /** Fails every call (the hub is closing). */
  close(): void {
    for (const p of this.#pending.values()) this.disconnected(p.clientId);
  }
}
