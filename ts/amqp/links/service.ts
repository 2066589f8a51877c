/**
 * The service side over AMQP, as `azure-iothub` uses it: after a put-token of an
 * `iothubowner` token (audience: the hub's hostname), a sender on `/messages/devicebound`
 * carries cloud-to-device messages, each addressed by its `to`
 * (`/devices/{id}/messages/devicebound`), queued as the service API queues them and
 * `accepted` once stored (azure-iothub `amqp.js`). Delivery feedback
 * (`/messages/serviceBound/feedback`) is not served yet.
 */
import type { Delivery, Message, Receiver } from "rhea";
import type { DeviceMessage } from "../../delivery/device-delivery.js";
import { type EdgeHubError, ErrorCodes } from "../../errors.js";
import { record } from "../../json.js";
import { ADDRESSES } from "../../vocabulary.js";
import { fromAmqp } from "../message.js";
import type { LinkOwner } from "./telemetry.js";

/** What the hub lends one connection for the service side. */
export interface ServiceSide {
  /** Checks an `iothubowner` token; returns its expiry (ms), or throws an `AUTH_*` error. */
  verifyToken(token: string): number;
  /** Queues a C2D message for `deviceId` as the service API does; rejects for an unknown device. */
  sendC2D(deviceId: string, m: DeviceMessage): Promise<void>;
  /** The connection proved who it is (its socket leaves the unauthenticated count). */
  authenticated(): void;
}

/** Why a message was refused, as AMQP says it. */
const REFUSALS: ReadonlyMap<string, string> = new Map([
  [ErrorCodes.IDENTITY_NOT_FOUND, "amqp:not-found"],
  [ErrorCodes.INVALID_ARGUMENT, "amqp:link:message-size-exceeded"],
]);

/** The application properties the service sets for IoT Hub itself, not the device. */
const SERVICE_ONLY = new Set(["iothub-ack"]);

/**
 * The handler of one service link's messages: each is queued for the device its `to` names
 * and settled once stored (or refused), and its credit given back.
 */
export function serviceC2dLink(
  owner: LinkOwner,
  receiver: Receiver,
  side: ServiceSide,
): (delivery: Delivery, m: Message | Buffer | undefined) => void {
  const done = (delivery: Delivery, error?: { condition: string; description: string }): void => {
    if (owner.closed) return;
    owner.settle(delivery, error);
    if (receiver.is_open()) receiver.add_credit(1);
  };
  return (delivery, m) => {
    const to: unknown = m && !Buffer.isBuffer(m) ? m.to : undefined;
    const ids = typeof to === "string" ? ADDRESSES.c2d.parse(to) : undefined;
    let message: DeviceMessage;
    try {
      if (!m || Buffer.isBuffer(m) || !ids)
        throw new Error("`to` must be /devices/{deviceId}/messages/devicebound");
      message = deviceMessage(m);
    } catch (err) {
      done(delivery, { condition: "amqp:decode-error", description: (err as Error).message });
      return;
    }
    owner.hold();
    side.sendC2D(ids.deviceId, message).then(
      () => {
        owner.release();
        done(delivery);
      },
      (err: unknown) => {
        owner.release();
        done(delivery, {
          condition: REFUSALS.get((err as EdgeHubError).code) ?? "amqp:resource-limit-exceeded",
          description: (err as Error).message,
        });
      },
    );
  };
}

/** A service's AMQP message as the delivery queues take it. */
function deviceMessage(m: Message): DeviceMessage {
  const { body, properties } = fromAmqp(m);
  const app = record<string>();
  for (const k of Object.keys(properties))
    if (!k.startsWith("$.") && !SERVICE_ONLY.has(k)) app[k] = properties[k] as string;
  const out: DeviceMessage = { body, properties: app };
  const system = [
    ["$.mid", "messageId"],
    ["$.cid", "correlationId"],
    ["$.ct", "contentType"],
    ["$.ce", "contentEncoding"],
  ] as const;
  for (const [key, field] of system) {
    const v = properties[key];
    if (v !== undefined) out[field] = v;
  }
  return out;
}

/** A connection's service login: its links live until the policy token expires. */
export class ServiceSession {
  readonly #links = new Set<Receiver>();
  readonly #expired: () => void;
  #expiry: NodeJS.Timeout | undefined;

  /** @param expired called when the token expired and the links were detached. */
  constructor(expired: () => void) {
    this.#expired = expired;
  }

  /** A (new) token, valid until `expiresAt` (ms). */
  renew(expiresAt: number): void {
    clearTimeout(this.#expiry);
    this.#expiry = setTimeout(
      () => this.#expire(),
      Math.min(Math.max(0, expiresAt - Date.now()), 2 ** 31 - 1),
    );
    this.#expiry.unref();
  }

  adopt(link: Receiver): void {
    this.#links.add(link);
  }

  drop(link: Receiver): void {
    this.#links.delete(link);
  }

  #expire(): void {
    for (const link of this.#links)
      if (!link.is_closed())
        link.close({ condition: "amqp:unauthorized-access", description: "token-expired" });
    this.#links.clear();
    this.#expired();
  }

  /** The connection closed. */
  close(): void {
    clearTimeout(this.#expiry);
  }
}
