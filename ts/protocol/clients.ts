/**
 * The clients connected now, over either protocol head: one connection per client id (a
 * newer login takes the id over), the sockets under them, which connections a revoked identity ends, and how they
 * are paused, closed and drained when the hub stops.
 */
import type net from "node:net";
import type tls from "node:tls";
import type { ClientConnection } from "./client.js";
import type { MqttConnection } from "./connection.js";

/** Resolves when `p` settles or after `ms`, whichever is first. */
export function within(ms: number, p: Promise<unknown> | undefined): Promise<void> {
  if (p === undefined) return Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** Connections by client id, and the sockets they came in on. */
export class Clients {
  readonly #connections = new Map<string, ClientConnection>();
  /** TLS sockets of MQTT and AMQP connections, until they close. */
  readonly #sockets = new Set<tls.TLSSocket>();
  /** The socket each client came in on (its TLS socket, or the WebSocket's). */
  readonly #socketOf = new WeakMap<ClientConnection, net.Socket>();

  /** A TLS socket, counted until it closes, and the MQTT connection `open` makes on it. */
  acceptTls(socket: tls.TLSSocket, open: () => MqttConnection): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
    this.#socketOf.set(open(), socket);
  }

  /** An MQTT connection over WebSocket; `socket` is the TLS socket under it (the listener counts those). */
  acceptWebSocket(conn: MqttConnection, socket: net.Socket): void {
    this.#socketOf.set(conn, socket);
  }

  /** A TLS socket of the AMQP head, counted until it closes (its identities come later: {@link cameIn}). */
  acceptAmqp(socket: tls.TLSSocket): void {
    this.#sockets.add(socket);
    socket.on("close", () => this.#sockets.delete(socket));
  }

  /** An identity of an AMQP connection came in on `socket`. */
  cameIn(client: ClientConnection, socket: net.Socket): void {
    this.#socketOf.set(client, socket);
  }

  /**
   * `conn` logged in as `clientId`: it is that client's connection now, and one the id
   * had before is closed (taken over). Returns the socket it came in on.
   */
  register(clientId: string, conn: ClientConnection): net.Socket | undefined {
    const previous = this.#connections.get(clientId);
    this.#connections.set(clientId, conn);
    previous?.close("taken-over");
    return this.#socketOf.get(conn);
  }

  /** `conn` closed; false when `clientId` had been taken over by another connection meanwhile. */
  unregister(clientId: string, conn: ClientConnection): boolean {
    if (!this.isCurrent(clientId, conn)) return false;
    this.#connections.delete(clientId);
    return true;
  }

  /** True while `conn` is the connection of `clientId`. */
  isCurrent(clientId: string, conn: ClientConnection): boolean {
    return this.#connections.get(clientId) === conn;
  }

  get(clientId: string): ClientConnection | undefined {
    return this.#connections.get(clientId);
  }

  has(clientId: string): boolean {
    return this.#connections.has(clientId);
  }

  get size(): number {
    return this.#connections.size;
  }

  ids(): IterableIterator<string> {
    return this.#connections.keys();
  }

  /** TLS sockets open now (WebSocket ones are the HTTPS listener's). */
  get tlsSockets(): number {
    return this.#sockets.size;
  }

  /**
   * Ends the connections a revoked identity carried: a device's own, its modules', and
   * logins made on its behalf (it is on their `via` chain); a module's own, and for an
   * edge's `$edgeHub` module the logins its keys signed for others.
   */
  revoke(deviceId: string, moduleId: string | undefined): void {
    for (const [clientId, conn] of this.#connections) {
      const via = conn.principal?.via;
      const mine =
        moduleId === undefined
          ? clientId === deviceId || clientId.startsWith(`${deviceId}/`) || via?.includes(deviceId) === true
          : clientId === `${deviceId}/${moduleId}` || (moduleId === "$edgeHub" && via?.at(-1) === deviceId);
      if (mine) conn.close("identity-revoked");
    }
  }

  /** Stops reading from every client (the hub is stopping). */
  pause(): void {
    for (const s of this.#sockets) s.pause();
    for (const c of this.#connections.values()) this.#socketOf.get(c)?.pause();
  }

  /**
   * Nothing new is read; what was read is stored and answered first: waits (up to
   * `graceMs`) until `router` has settled every message read. A connection resumes reading
   * when its answers bring it below its cap, so it is paused again after every store call.
   */
  async quiesce(
    router: {
      on(e: "stored", l: () => void): unknown;
      off(e: "stored", l: () => void): unknown;
      settled(): Promise<unknown>;
    },
    graceMs: number,
  ): Promise<void> {
    const pause = () => this.pause();
    pause();
    router.on("stored", pause);
    await within(graceMs, router.settled());
    router.off("stored", pause);
  }

  /**
   * Closes every connection and waits, up to `graceMs`, for each socket to close: each has
   * written its last PUBACKs and its FIN, and reads and drops what the client still sends
   * until the client closes too. Then the rest are destroyed. Waiting only until the last
   * bytes were handed to the kernel was not enough: destroying a socket that has unread
   * bytes (a client still sending) sends an RST, and a client's kernel drops what it had
   * received and not yet read, PUBACKs included, when the RST arrives.
   */
  async closeAll(reason: string, graceMs: number): Promise<void> {
    for (const c of this.#connections.values()) c.close(reason);
    await within(
      graceMs,
      Promise.all(
        [...this.#sockets].map((s) =>
          // Only what a close ended: a socket with no connection yet is destroyed at once.
          s.closed || !s.writableEnded ? undefined : new Promise((resolve) => s.once("close", resolve)),
        ),
      ),
    );
    for (const s of this.#sockets) s.destroy();
  }
}
