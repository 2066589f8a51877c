/**
 * The service side over AMQP, as `azure-iothub` uses it: after a put-token of an
 * `iothubowner` token (audience: the hub's hostname), a sender on `/messages/devicebound`
 * carries cloud-to-device messages, each addressed by its `to`
 * (`/devices/{id}/messages/devicebound`), queued as the service API queues them (message id,
 * correlation id, content type and encoding, application properties, `iothub-ack`, the
 * absolute expiry as its TTL) and `accepted` once stored; and, on a root hub, a receiver on
 * `/messages/serviceBound/feedback` reads the C2D feedback (./feedback.ts). A refusal is
 * `rejected` with the condition the SDK turns into IoT Hub's error (azure-iothub `amqp.js`,
 * azure-iot-amqp-base `amqp_common_errors.js`).
 */
import type { Delivery, Message, Receiver, Sender } from "rhea";
import { EdgeHubError, ErrorCodes } from "../../errors.js";
import { record } from "../../json.js";
import { C2dRefused, type C2dSend } from "../../service/service-side.js";
import { ADDRESSES } from "../../vocabulary.js";
import type { Refusal } from "../dispositions.js";
import type { EventHub } from "../event-hub/event-hub.js";
import { fromAmqp } from "../message.js";
import type { FeedbackQueue } from "./feedback.js";
import type { LinkOwner } from "./telemetry.js";

/** What the hub lends one connection for the service side. */
export interface ServiceSide {
  /** Checks an `iothubowner` token; returns its expiry (ms), or throws an `AUTH_*` error. */
  verifyToken(token: string): number;
  /** Queues a C2D message for `deviceId` as the service API does; rejects with a `C2dRefused`. */
  sendC2D(deviceId: string, m: C2dSend): Promise<void>;
  /** The connection proved who it is (its socket leaves the unauthenticated count). */
  authenticated(): void;
  /** The hub's C2D feedback (a root's); undefined: the feedback address is not served. */
  readonly feedback: FeedbackQueue | undefined;
  /** The Event Hubs–compatible endpoint (a root's); undefined: not served. */
  readonly eventHub?: EventHub | undefined;
}

/** The system properties a C2D send carries, from their stored `$.` keys. */
const SYSTEM = [
  ["$.mid", "messageId"],
  ["$.cid", "correlationId"],
  ["$.ct", "contentType"],
  ["$.ce", "contentEncoding"],
] as const;

/** The device a C2D message is for, from its `to`; undefined when it names none. */
function targetOf(to: unknown): string | undefined {
  if (typeof to !== "string") return undefined;
  // Some SDKs name the whole URI: the path is what counts.
  return ADDRESSES.c2d.parse(to.replace(/^amqps?:\/\/[^/]*/i, ""))?.deviceId;
}

/** Reads one service message into a C2D send; throws a refusal for what IoT Hub would not take. */
function readSend(m: Message | Buffer | undefined): { deviceId: string; send: C2dSend } {
  if (!m || Buffer.isBuffer(m)) throw { condition: "amqp:decode-error", description: "not an AMQP message" };
  const deviceId = targetOf(m.to);
  if (deviceId === undefined)
    throw {
      condition: "com.microsoft:argument-error",
      description: "`to` must be /devices/{deviceId}/messages/devicebound",
    } satisfies Refusal;
  let stored: ReturnType<typeof fromAmqp>;
  try {
    stored = fromAmqp(m);
  } catch (err) {
    throw { condition: "amqp:decode-error", description: (err as Error).message } satisfies Refusal;
  }
  const properties = record<string>();
  // Other `$.` keys (to, user id, expiry) are the hub's to set on a C2D message.
  for (const key of Object.keys(stored.properties))
    if (!key.startsWith("$.")) properties[key] = stored.properties[key] as string;
  const send: C2dSend = { body: stored.body, properties, ack: properties["iothub-ack"] };
  for (const [key, field] of SYSTEM) {
    const v = stored.properties[key];
    if (v !== undefined) send[field] = v;
  }
  if (m.absolute_expiry_time instanceof Date && !Number.isNaN(m.absolute_expiry_time.getTime()))
    send.expiresAt = m.absolute_expiry_time;
  return { deviceId, send };
}

/** The condition a refused store is answered with. */
function refusalOf(err: unknown): Refusal | undefined {
  if (err instanceof C2dRefused) {
    if (err.reason === "device-not-found")
      return { condition: "amqp:not-found", description: `DeviceNotFound: ${err.message}` };
    if (err.reason === "too-large")
      return { condition: "amqp:link:message-size-exceeded", description: err.message };
    // azure-iothub's amqp_service_errors.js: DeviceMaximumQueueDepthExceededError.
    if (err.reason === "queue-full")
      return { condition: "amqp:resource-limit-exceeded", description: err.message };
    return { condition: "com.microsoft:argument-error", description: err.message };
  }
  if (
    err instanceof EdgeHubError &&
    (err.code === ErrorCodes.STORE_FULL || err.code === ErrorCodes.STORE_SHARE_EXCEEDED)
  )
    return { condition: "amqp:resource-limit-exceeded", description: err.message };
  return undefined;
}

/**
 * The handler of one service link's messages: each is queued for the device its `to` names
 * and settled once stored (or refused), and its credit given back. `authorized` is false
 * once the policy token expired (its links are detached then; a message may come first).
 */
export function serviceC2dLink(
  owner: LinkOwner,
  receiver: Receiver,
  side: ServiceSide,
  authorized: () => boolean,
): (delivery: Delivery, m: Message | Buffer | undefined) => void {
  const done = (delivery: Delivery, error?: Refusal): void => {
    if (owner.closed) return;
    owner.settle(delivery, error);
    if (receiver.is_open()) receiver.add_credit(1);
  };
  return (delivery, m) => {
    let target: ReturnType<typeof readSend>;
    try {
      if (!authorized())
        throw { condition: "amqp:unauthorized-access", description: "the service token has expired" };
      target = readSend(m);
    } catch (refusal) {
      done(delivery, refusal as Refusal);
      return;
    }
    // Counted with the connection's telemetry: many links cannot queue more than it allows.
    owner.hold();
    side.sendC2D(target.deviceId, target.send).then(
      () => {
        owner.release();
        done(delivery);
      },
      (err: unknown) => {
        owner.release();
        const refusal = refusalOf(err);
        if (!refusal) owner.ctx.log.log("warn", "c2d-send-failed", { reason: (err as Error).message });
        done(
          delivery,
          refusal ?? { condition: "amqp:internal-error", description: "the message could not be stored" },
        );
      },
    );
  };
}

/**
 * A connection's service login: its links live until the policy token expires. Each link
 * is told when it ends, by the link's own detach, the token's expiry or the connection's
 * end (rhea closes no link when its connection goes): a feedback batch out on it is then
 * sent to the next service client.
 */
export class ServiceSession {
  /** The service links, and what ends each one's role. */
  readonly #links = new Map<Sender | Receiver, () => void>();
  readonly #expired: () => void;
  #expiry: NodeJS.Timeout | undefined;
  #expiresAt = 0;

  /** @param expired called when the token expired and the links were detached. */
  constructor(expired: () => void) {
    this.#expired = expired;
  }

  /** True while the token last put is valid. */
  get valid(): boolean {
    return this.#expiresAt > Date.now();
  }

  /** A (new) token, valid until `expiresAt` (ms). */
  renew(expiresAt: number): void {
    this.#expiresAt = expiresAt;
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(
      () => this.#expire(),
      Math.min(Math.max(0, expiresAt - Date.now()), 2 ** 31 - 1),
    );
    this.#expiry.unref();
  }

  /** `link` serves the service side; `ended` is called once when it goes. */
  adopt(link: Sender | Receiver, ended: () => void = () => {}): void {
    this.#links.set(link, ended);
  }

  /** `link` went away. */
  drop(link: Sender | Receiver): void {
    const ended = this.#links.get(link);
    this.#links.delete(link);
    ended?.();
  }

  #expire(): void {
    // setTimeout holds at most ~24.8 days: a longer token is checked again then.
    if (this.valid) {
      this.renew(this.#expiresAt);
      return;
    }
    for (const link of this.#links.keys())
      if (!link.is_closed())
        link.close({ condition: "amqp:unauthorized-access", description: "token-expired" });
    this.#endAll();
    this.#expired();
  }

  #endAll(): void {
    const ended = [...this.#links.values()];
    this.#links.clear();
    for (const end of ended) end();
  }

  /** The connection closed: each link's role ends. */
  close(): void {
    clearTimeout(this.#expiry);
    this.#endAll();
  }
}
