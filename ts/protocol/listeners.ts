/**
 * The hub's device-facing listeners: MQTT over TLS, AMQP over TLS, and HTTPS carrying the
 * service API and MQTT and AMQP over WebSocket at IoT Hub's path. Their TLS settings (client certificates asked for,
 * never required), their deadlines from `limits`, and what happens to a socket that fails
 * its handshake or request: counted by {@link Admission}, logged without flooding, closed.
 * What a connection or a request then does is the caller's (the hub's composition).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import type net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import type { WebSocketServer } from "ws";
import type { PeerCertificate } from "../auth/authenticator.js";
import type { Limits } from "../config/limits.js";
import type { Admission, RateLimitedLog } from "./admission.js";

/** The WebSocket subprotocol of AMQP (IoT Hub's, and the OASIS binding's). */
const AMQP_WEBSOCKET_PROTOCOL = "AMQPWSB10";

/** The server certificate and key, and the CAs device certificates must chain to. */
export interface ListenerTls {
  cert: string;
  key: string;
  deviceCas: string[];
}

/** What the listeners hand over. */
export interface ListenerHandlers {
  /** An MQTT connection over TLS, handshake done. */
  mqtt(socket: tls.TLSSocket, peer: PeerCertificate | undefined): void;
  /** An AMQP connection over TLS, handshake done. */
  amqp(socket: tls.TLSSocket, peer: PeerCertificate | undefined): void;
  /** An MQTT connection over WebSocket; `socket` is the TLS socket under it. */
  webSocket(stream: Duplex, socket: net.Socket, peer: PeerCertificate | undefined): void;
  /** An AMQP connection over WebSocket (subprotocol `AMQPWSB10`); `socket` is the TLS socket under it. */
  amqpWebSocket(stream: Duplex, socket: net.Socket, peer: PeerCertificate | undefined): void;
  /** A service API request. */
  request(req: IncomingMessage, res: ServerResponse): void;
}

/** The listeners, not yet listening. */
export interface Listeners {
  mqtt: tls.Server;
  amqp: tls.Server;
  https: https.Server;
  websockets: WebSockets;
  /** The client certificate a socket presented, as the authenticator takes it. */
  peerOf(socket: tls.TLSSocket): PeerCertificate | undefined;
}

/** Builds both listeners with their deadlines, guarded by `admission`. */
export function createListeners(
  material: ListenerTls,
  limits: Limits,
  admission: Admission,
  quietLog: RateLimitedLog,
  on: ListenerHandlers,
): Listeners {
  const trusted = material.deviceCas.length > 0;
  // Client certificates are asked for, never required: SAS clients send none. The chain
  // is checked against the trusted device CAs only.
  const tlsOptions = {
    handshakeTimeout: limits.tlsHandshakeTimeoutMs,
    cert: material.cert,
    key: material.key,
    minVersion: "TLSv1.2" as const,
    requestCert: true,
    rejectUnauthorized: false,
    ...(trusted ? { ca: material.deviceCas } : {}),
  };
  const peerOf = (socket: tls.TLSSocket): PeerCertificate | undefined => {
    const cert = socket.getPeerCertificate();
    if (!cert?.raw) return undefined;
    const cn = cert.subject?.CN;
    return {
      der: cert.raw,
      commonName: Array.isArray(cn) ? (cn[0] ?? "") : (cn ?? ""),
      chainTrusted: trusted && socket.authorized,
    };
  };
  const tlsRefused = (err: Error & { code?: string }, socket: tls.TLSSocket) => {
    if (err.code === "ERR_TLS_HANDSHAKE_TIMEOUT")
      admission.timedOut("tlsHandshake", { address: socket.remoteAddress });
    else quietLog.log("warn", "tls-refused", { reason: err.message });
    // With a listener here Node leaves the socket open: a handshake past its deadline
    // would hold its slot (and ~10 KB) for good.
    socket.destroy();
  };

  /** A device protocol over TLS (MQTT, AMQP), behind the admission checks. */
  const deviceServer = (handle: ListenerHandlers["mqtt"]): tls.Server => {
    const server = tls.createServer(tlsOptions);
    server.on("secureConnection", (socket) => {
      // No Nagle: writes are already gathered per event-loop turn, and a delivery waiting
      // for the client's acknowledgement must not wait for a delayed ACK as well (40 ms a round).
      socket.setNoDelay(true);
      handle(socket, peerOf(socket));
    });
    server.on("tlsClientError", tlsRefused);
    admission.guard(server);
    return server;
  };
  const mqtt = deviceServer(on.mqtt);
  const amqp = deviceServer(on.amqp);

  const server = https.createServer(
    {
      ...tlsOptions,
      headersTimeout: limits.httpHeadersTimeoutMs,
      requestTimeout: limits.httpRequestTimeoutMs,
      keepAliveTimeout: limits.httpKeepAliveTimeoutMs,
      // Node checks the two deadlines above every 30 s by default: a half-sent request
      // would outlive its deadline by that much.
      connectionsCheckingInterval: Math.min(1000, Math.ceil(limits.httpHeadersTimeoutMs / 4)),
    },
    on.request,
  );
  server.on("tlsClientError", tlsRefused);
  server.on("clientError", (err: Error & { code?: string }, socket: net.Socket) => {
    // Node's own answer (a 4xx and close), counted and rate-limited.
    const timeout = err.code === "ERR_HTTP_REQUEST_TIMEOUT";
    if (timeout) admission.timedOut("http", { address: socket.remoteAddress });
    else quietLog.log("warn", "http-refused", { reason: err.message });
    if (socket.writable && err.code !== "ECONNRESET")
      socket.end(
        `HTTP/1.1 ${timeout ? "408 Request Timeout" : "400 Bad Request"}\r\nConnection: close\r\n\r\n`,
      );
    setTimeout(() => socket.destroy(), 1000).unref();
  });
  // MQTT over WebSocket shares the HTTPS listener, at IoT Hub's path; AMQP also at Event
  // Hubs clients' path (@azure/event-hubs `webSocketEndpointPath`).
  const websockets = new WebSockets();
  server.on("upgrade", (req, socket, head) => {
    const path = new URL(req.url ?? "/", "https://hub").pathname;
    if (path !== "/$iothub/websocket" && path !== "/$servicebus/websocket") {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n");
      return;
    }
    websockets.upgrade(req, socket, head, (stream, protocol) => {
      // One path for both device protocols, told apart by the subprotocol the client asked
      // for (the SDKs: `mqtt`, `AMQPWSB10`); ws answers with the first it offered.
      const amqp = protocol === AMQP_WEBSOCKET_PROTOCOL;
      if (!amqp && path !== "/$iothub/websocket") {
        stream.destroy();
        return;
      }
      const handle = amqp ? on.amqpWebSocket : on.webSocket;
      handle(stream, req.socket, peerOf(req.socket as tls.TLSSocket));
    });
  });
  admission.guard(server);
  return { mqtt, amqp, https: server, websockets, peerOf };
}

/**
 * Binds the MQTT, HTTPS and (unless `amqps` is false) AMQP listeners to `at` (port 0: a free
 * one). Rejects with the first bind that fails, after closing those already listening.
 */
export async function listen(
  listeners: Listeners,
  at: { host: string; mqtts: number; https: number; amqps: number | false },
): Promise<void> {
  try {
    for (const [srv, port] of [
      [listeners.mqtt, at.mqtts],
      [listeners.https, at.https],
      ...(at.amqps === false ? [] : [[listeners.amqp, at.amqps] as const]),
    ] as const) {
      await new Promise<void>((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(port, at.host, () => resolve());
      });
    }
  } catch (err) {
    stopListening(listeners);
    throw err;
  }
}

/** Stops accepting connections; resolves once the listeners are closed (open connections end apart). */
export function stopListening(listeners: Listeners): Promise<void> {
  return Promise.all(
    [listeners.mqtt, listeners.amqp, listeners.https].map(
      (s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve())),
    ),
  ).then(() => undefined);
}

/** True while both listeners accept connections. */
export function serving(listeners: Listeners): boolean {
  return listeners.mqtt.listening && listeners.https.listening;
}

/**
 * The WebSocket side of the HTTPS listener. The `ws` library is loaded on the first upgrade,
 * not at start: most hubs never see a WebSocket client, and loading it costs an idle hub
 * about 3 MB of RSS (benches/rss.bench.mjs).
 */
export class WebSockets {
  #server:
    | Promise<{ server: WebSocketServer; stream: typeof import("ws").createWebSocketStream }>
    | undefined;
  #clients: WebSocketServer["clients"] | undefined;

  /** WebSocket connections open now. */
  get size(): number {
    return this.#clients?.size ?? 0;
  }

  /** Ends every WebSocket connection at once (the hub is closing). */
  terminateAll(): void {
    for (const ws of this.#clients ?? []) ws.terminate();
  }

  /**
   * Completes an upgrade at IoT Hub's path; `open` gets the connection as a byte stream, and
   * the subprotocol agreed.
   */
  upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    open: (stream: Duplex, protocol: string) => void,
  ): void {
    this.#server ??= import("ws").then(({ WebSocketServer, createWebSocketStream }) => {
      const server = new WebSocketServer({ noServer: true, maxPayload: 320 * 1024 });
      this.#clients = server.clients;
      return { server, stream: createWebSocketStream };
    });
    this.#server.then(
      ({ server, stream }) => server.handleUpgrade(req, socket, head, (ws) => open(stream(ws), ws.protocol)),
      () => socket.destroy(),
    );
  }
}
