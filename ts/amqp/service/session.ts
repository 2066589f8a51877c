/**
 * The service side of one AMQP connection, as IoT Hub serves it to its service SDKs
 * (azure-iothub `amqp.js`): a `$cbs` put-token of the `iothubowner` policy for the hub's own
 * name (no `/devices/…` path), checked as the HTTPS service API checks its header
 * (../../service/credential.ts `checkServiceToken`), then links on the service addresses:
 * a sender to `/messages/devicebound` (C2D, ./c2d-send.ts) and a receiver on
 * `/messages/serviceBound/feedback` (./feedback.ts). Served on a root hub only; a device or
 * module token gives no access to these addresses.
 */
import type { Delivery, Message, Receiver, Sender } from "rhea";
import type { Authenticator } from "../../auth/authenticator.js";
import type { Registry } from "../../auth/registry.js";
import type { DeviceDelivery } from "../../delivery/device-delivery.js";
import type { Logger } from "../../log.js";
import { checkServiceToken } from "../../service/credential.js";
import { C2dSendLink } from "./c2d-send.js";
import type { FeedbackQueue } from "./feedback.js";

/** What the service side works on (one per hub, shared by its connections). */
export interface AmqpServiceContext {
  hostname: string;
  /** The `iothubowner` policy key. */
  serviceKey: string;
  authenticator: Authenticator;
  registry: Registry;
  delivery: DeviceDelivery;
  feedback: FeedbackQueue;
  log: Logger;
}

/** What the service links need of their connection (../connection.ts `AmqpConnection`). */
export interface ServiceConnection {
  readonly closed: boolean;
  /** Accepts `delivery`, or rejects it with `error`. */
  settle(delivery: Delivery, error?: { condition: string; description: string }): void;
  /** A message waits for the store (past the connection's bound its socket is paused). */
  hold(): void;
  /** A held message was settled. */
  release(): void;
}

/** One service link: its messages, the client's dispositions, its end. */
export interface ServiceLink {
  onMessage?: ((delivery: Delivery, message: Message) => void) | undefined;
  settled?: ((delivery: Delivery, outcome: "accepted" | "rejected" | "released") => void) | undefined;
  close(reason: string): void;
}

/** Service addresses, as the SDK names them (it writes `serviceBound`; IoT Hub takes any case). */
const C2D_SEND = "/messages/devicebound";
const FEEDBACK = "/messages/servicebound/feedback";

type LinkError = { condition: string; description: string };

/** The service login and links of one connection. */
export class ServiceSide {
  readonly #conn: ServiceConnection;
  readonly #ctx: AmqpServiceContext;
  /** The service links attached, and their roles (told when the link or the connection ends). */
  readonly #links = new Map<Sender | Receiver, ServiceLink>();
  /** When the policy token put last expires (ms since the epoch); 0 before one was put. */
  #expiresAt = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Called when the policy token expired and its links were detached. */
  readonly #expired: () => void;

  constructor(conn: ServiceConnection, ctx: AmqpServiceContext, expired: () => void) {
    this.#conn = conn;
    this.#ctx = ctx;
    this.#expired = expired;
  }

  /** True while a policy token put on this connection is valid. */
  get authenticated(): boolean {
    return this.#expiresAt > Date.now();
  }

  /** True for a put-token audience that names the hub itself (a policy token), not an identity. */
  static claims(audience: string): boolean {
    return !audience.includes("/");
  }

  /** A put-token of a policy token: checked, or an `AUTH_*` error thrown. A later one renews it. */
  login(token: string): void {
    const expiry = checkServiceToken(
      token,
      this.#ctx.hostname,
      this.#ctx.serviceKey,
      this.#ctx.authenticator,
    );
    this.#expiresAt = expiry * 1000;
    clearTimeout(this.#timer);
    // setTimeout holds at most ~24.8 days; a longer token is checked again then.
    const wait = Math.min(this.#expiresAt - Date.now(), 2 ** 31 - 1);
    this.#timer = setTimeout(() => this.#checkExpiry(), wait);
    this.#timer.unref();
  }

  #checkExpiry(): void {
    if (this.#conn.closed) return;
    if (this.authenticated) {
      // Renewed since: wait for the new expiry.
      const wait = Math.min(this.#expiresAt - Date.now(), 2 ** 31 - 1);
      this.#timer = setTimeout(() => this.#checkExpiry(), wait);
      this.#timer.unref();
      return;
    }
    for (const link of [...this.#links.keys()])
      link.close({ condition: "amqp:unauthorized-access", description: "token-expired" });
    this.#expired();
  }

  /**
   * The role of a link at `path` when it is a service address; a refusal when the
   * connection holds no valid policy token or the direction is wrong; undefined for any
   * other address.
   */
  route(link: Sender | Receiver, path: string): ServiceLink | LinkError | undefined {
    const lower = path.toLowerCase();
    if (lower !== C2D_SEND && lower !== FEEDBACK) return undefined;
    if (!this.authenticated)
      return {
        condition: "amqp:unauthorized-access",
        description: `${path} needs an iothubowner token put on $cbs`,
      };
    // The client sends C2D (our receiver) and reads feedback (our sender).
    if ((lower === C2D_SEND) !== link.is_receiver())
      return { condition: "amqp:not-allowed", description: `${path} is not served in this direction` };
    const role: ServiceLink =
      lower === C2D_SEND
        ? new C2dSendLink(this.#conn, link as Receiver, this.#ctx, () => this.authenticated)
        : this.#ctx.feedback.attach(link as Sender);
    this.#links.set(link, role);
    // The connection tells the role when the link ends (a listener on the link would keep
    // rhea from telling the connection).
    const links = this.#links;
    return {
      onMessage: role.onMessage?.bind(role),
      settled: role.settled?.bind(role),
      close(reason: string) {
        links.delete(link);
        role.close(reason);
      },
    };
  }

  /** The connection closed: each link's role ends (a feedback batch out on it goes again). */
  close(): void {
    clearTimeout(this.#timer);
    for (const role of this.#links.values()) role.close("connection-closed");
    this.#links.clear();
  }
}
