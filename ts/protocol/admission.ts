/**
 * Admission of sockets on every device-facing listener (MQTT/TLS, HTTPS and the WebSocket
 * on it): a cap on sockets open at once, and a cap on sockets of one remote address not
 * yet authenticated, checked when TCP accepts, before any TLS work. Beyond a cap the socket
 * is closed, counted, and logged at most once per interval (a flood must not flood the log).
 *
 * Authenticated connections are not starved by unauthenticated ones: a host holds at most
 * `maxUnauthenticatedPerAddress` slots in the handshake and CONNECT phases, and each of
 * those ends at its deadline (TLS handshake, HTTP headers, MQTT CONNECT).
 */
import type net from "node:net";
import type { Limits } from "../config/limits.js";
import type { Logger, LogLevel } from "../log.js";

/** Counters of refused and timed-out sockets since the hub started (`status().limits`). */
export interface AdmissionStats {
  maxConnections: number;
  /** Sockets open now over every listener. */
  open: number;
  /** Of those, not authenticated (yet). */
  unauthenticated: number;
  refused: { maxConnections: number; perAddress: number };
  timeouts: { tlsHandshake: number; mqttConnect: number; http: number };
}

/** What {@link Admission} keeps of one admitted socket. */
export interface Slot {
  readonly address: string;
  authenticated: boolean;
}

/**
 * Logs an event at most once per `intervalMs`; the next line says how many were left out.
 * Keyed by event name (or a key the caller makes from names in the code, never from
 * input): a fixed set, so the map stays small whatever the input.
 */
export class RateLimitedLog {
  readonly #log: Logger;
  readonly #intervalMs: number;
  readonly #events = new Map<string, { next: number; suppressed: number }>();

  constructor(log: Logger, intervalMs = 10_000) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  log(level: LogLevel, event: string, fields: Record<string, unknown> = {}, key = event): void {
    const now = Date.now();
    const e = this.#events.get(key);
    if (e && now < e.next) {
      e.suppressed++;
      return;
    }
    const suppressed = e?.suppressed ?? 0;
    this.#events.set(key, { next: now + this.#intervalMs, suppressed: 0 });
    this.#log.log(level, event, suppressed > 0 ? { ...fields, suppressed } : fields);
  }
}

/**
 * The key of a remote address for the per-address cap: IPv4 as is (also when mapped into
 * IPv6), IPv6 by its /64, the smallest block a host is usually given.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (!address.includes(":")) return address;
  const [head = "", tail] = address.split("%")[0]?.split("::") ?? [];
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(":")}::/64`;
}

/** Socket admission and its counters, for all listeners of one hub. */
export class Admission {
  readonly #limits: Limits;
  readonly #log: RateLimitedLog;
  /** Admitted sockets by local port, remote address and port (a TLS socket has the same). */
  readonly #slots = new Map<string, Slot>();
  /** Unauthenticated sockets per address key: at most `maxConnections` entries. */
  readonly #unauthenticated = new Map<string, number>();
  readonly #refused = { maxConnections: 0, perAddress: 0 };
  readonly #timeouts = { tlsHandshake: 0, mqttConnect: 0, http: 0 };

  constructor(limits: Limits, log: RateLimitedLog) {
    this.#limits = limits;
    this.#log = log;
  }

  /**
   * Puts the admission check in front of `server`'s own `connection` listeners (the TLS
   * wrap): a refused socket is closed before any TLS state exists for it.
   */
  guard(server: net.Server): void {
    const inner = server.listeners("connection") as Array<(socket: net.Socket) => void>;
    server.removeAllListeners("connection");
    server.on("connection", (socket: net.Socket) => {
      if (!this.#admit(socket)) return;
      for (const listener of inner) listener.call(server, socket);
    });
  }

  #admit(socket: net.Socket): boolean {
    const key = slotKey(socket);
    const remote = socket.remoteAddress;
    if (key === undefined || remote === undefined) {
      socket.destroy();
      return false;
    }
    const address = addressKey(remote);
    if (this.#slots.size >= this.#limits.maxConnections) {
      this.#refused.maxConnections++;
      this.#log.log("warn", "connection-refused", {
        reason: "max-connections",
        limit: this.#limits.maxConnections,
        address,
      });
      socket.destroy();
      return false;
    }
    const waiting = this.#unauthenticated.get(address) ?? 0;
    if (waiting >= this.#limits.maxUnauthenticatedPerAddress) {
      this.#refused.perAddress++;
      this.#log.log("warn", "connection-refused", {
        reason: "unauthenticated-per-address",
        limit: this.#limits.maxUnauthenticatedPerAddress,
        address,
      });
      socket.destroy();
      return false;
    }
    const slot: Slot = { address, authenticated: false };
    this.#slots.set(key, slot);
    this.#unauthenticated.set(address, waiting + 1);
    socket.once("close", () => {
      this.#slots.delete(key);
      this.#release(slot);
    });
    return true;
  }

  /** Counts the socket of `socket` (the raw one or its TLS wrap) as authenticated. */
  authenticated(socket: net.Socket): void {
    const key = slotKey(socket);
    const slot = key === undefined ? undefined : this.#slots.get(key);
    if (slot) this.#release(slot);
  }

  #release(slot: Slot): void {
    if (slot.authenticated) return;
    slot.authenticated = true;
    const n = (this.#unauthenticated.get(slot.address) ?? 1) - 1;
    if (n > 0) this.#unauthenticated.set(slot.address, n);
    else this.#unauthenticated.delete(slot.address);
  }

  /** Counts a socket closed at one of its deadlines, and logs it (rate-limited). */
  timedOut(kind: keyof AdmissionStats["timeouts"], fields: Record<string, unknown> = {}): void {
    this.#timeouts[kind]++;
    this.#log.log("warn", "connection-timed-out", { deadline: kind, ...fields });
  }

  stats(): AdmissionStats {
    let unauthenticated = 0;
    for (const n of this.#unauthenticated.values()) unauthenticated += n;
    return {
      maxConnections: this.#limits.maxConnections,
      open: this.#slots.size,
      unauthenticated,
      refused: { ...this.#refused },
      timeouts: { ...this.#timeouts },
    };
  }
}

function slotKey(socket: net.Socket): string | undefined {
  const { localPort, remoteAddress, remotePort } = socket;
  if (localPort === undefined || remoteAddress === undefined || remotePort === undefined) return undefined;
  return `${localPort}|${remoteAddress}|${remotePort}`;
}
