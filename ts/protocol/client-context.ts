/**
 * What an MQTT connection asks of the hub, put together from the hub's parts: logins and
 * their refusals (counted; the unauthenticated ones rate-limited), one connection per
 * client id, and what a subscription starts here (deliveries, waiting method calls) and
 * at the parent (through the follower the hub gives when it has one).
 */
import type { Authenticator } from "../auth/authenticator.js";
import type { Logger } from "../log.js";
import type { DirectMethods } from "../methods/direct-methods.js";
import type { Router } from "../routing/router.js";
import type { Twins } from "../twin/twins.js";
import type { Admission, RateLimitedLog } from "./admission.js";
import type { Clients } from "./clients.js";
import type { ConnectionContext } from "./connection.js";
import type { Sessions } from "./sessions.js";

/** The parent's side of the clients here (ts/upstream/upstream.ts). */
export interface ClientFollower {
  subscribed(clientId: string, kind: string): void;
  unsubscribed(clientId: string, kind: string): void;
  disconnected(clientId: string): void;
  loginRefused(code: string, clientId: string): void;
  /** Brings a twin up to date from the parent before a GET is answered. */
  refreshTwin(clientId: string): Promise<void>;
}

/** The parts a connection works with. */
export interface ClientParts {
  authenticator: Authenticator;
  router: Router;
  twins: Twins;
  methods: DirectMethods;
  sessions: Sessions;
  clients: Clients;
  admission: Admission;
  /** For what anyone can cause (refusals, timeouts): rate-limited. */
  quietLog: RateLimitedLog;
  log: Logger;
  /** How long a socket may stay open without CONNECT. */
  connectTimeoutMs: number;
  /** Starts delivering a client's queued C2D messages and module inputs. */
  delivery: { pump(clientId: string): void };
  /** Absent on a root hub. */
  upstream: ClientFollower | undefined;
  /** A login was refused, with the reason's code (metrics). */
  refused(code: string): void;
}

/** Largest message body accepted, as IoT Hub's. */
const MAX_MESSAGE_BYTES = 256 * 1024;

/** The context every MQTT connection of a hub shares. */
export function connectionContext(p: ClientParts): ConnectionContext {
  const { clients, admission, upstream } = p;
  return {
    authenticator: p.authenticator,
    router: p.router,
    twins: p.twins,
    methods: p.methods,
    sessions: p.sessions,
    log: p.log,
    subscribed: (conn, kind) => {
      const clientId = conn.principal?.clientId;
      if (clientId === undefined) return;
      if (kind === "c2d" || kind === "module-inputs") p.delivery.pump(clientId);
      // Calls waiting for it go now.
      if (kind === "methods") p.methods.listening(clientId);
      upstream?.subscribed(clientId, kind);
    },
    unsubscribed: (conn, kind) => {
      const clientId = conn.principal?.clientId;
      if (clientId !== undefined && clients.isCurrent(clientId, conn)) upstream?.unsubscribed(clientId, kind);
    },
    refreshTwin: upstream ? (clientId) => upstream.refreshTwin(clientId) : undefined,
    refused: (code, clientId) => {
      p.refused(code);
      upstream?.loginRefused(code, clientId);
    },
    maxMessageBytes: MAX_MESSAGE_BYTES,
    connectTimeoutMs: p.connectTimeoutMs,
    closedUnauthenticated: (level, reason, fields) => {
      if (reason === "connect-timeout") admission.timedOut("mqttConnect", fields);
      else p.quietLog.log(level, "client-closed", { reason, ...fields }, `client-closed:${reason}`);
    },
    register: (clientId, conn) => {
      const socket = clients.register(clientId, conn);
      if (socket) admission.authenticated(socket);
    },
    unregister: (clientId, conn) => {
      if (!clients.unregister(clientId, conn)) return;
      p.methods.disconnected(clientId);
      upstream?.disconnected(clientId);
    },
  };
}
