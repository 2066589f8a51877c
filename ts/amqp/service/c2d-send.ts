/**
 * C2D from a service client: its sender on `/messages/devicebound`, our receiver. Each
 * message names its device in `to` (`/devices/{id}/messages/devicebound`, set by azure-iothub
 * `amqp.js` `send`) and is stored by the function the HTTPS service API uses
 * (../../service/c2d.ts `sendCloudToDevice`): message id, correlation id, content type and
 * encoding, application properties, `iothub-ack` and the absolute expiry. `accepted` is sent
 * only once it is durable; a refusal is `rejected` with the condition the SDK turns into
 * IoT Hub's error (azure-iothub `common-amqp/amqp_common_errors.js`, `amqp_service_errors.js`).
 */
import type { Delivery, Message, Receiver } from "rhea";
import { EdgeHubError, ErrorCodes } from "../../errors.js";
import { C2dRefused, type C2dSend, sendCloudToDevice } from "../../service/c2d.js";
import { ADDRESSES } from "../../vocabulary.js";
import { fromAmqp, UnsupportedMessage } from "../message.js";
import type { AmqpServiceContext, ServiceConnection, ServiceLink } from "./session.js";

/** Messages a service client may have waiting for the store on one link. */
const CREDIT = 16;

type Refusal = { condition: string; description: string };

/** The system properties a C2D send carries, from their stored `$.` keys. */
const FIELDS = [
  ["$.mid", "messageId"],
  ["$.cid", "correlationId"],
  ["$.ct", "contentType"],
  ["$.ce", "contentEncoding"],
] as const;

/** The device a C2D message is for, from its `to`; undefined when it names none. */
function targetOf(to: unknown): string | undefined {
  if (typeof to !== "string") return undefined;
  return ADDRESSES.c2d.parse(to.replace(/^amqps?:\/\/[^/]*/i, ""))?.deviceId;
}

/** Reads one service message into a C2D send; throws a refusal for what IoT Hub would not take. */
function readSend(m: Message): { deviceId: string; send: C2dSend } {
  const deviceId = targetOf(m.to);
  if (deviceId === undefined)
    throw {
      condition: "com.microsoft:argument-error",
      description: "to must be /devices/{deviceId}/messages/devicebound",
    } satisfies Refusal;
  let stored: ReturnType<typeof fromAmqp>;
  try {
    stored = fromAmqp(m);
  } catch (err) {
    if (err instanceof UnsupportedMessage)
      throw { condition: "amqp:decode-error", description: err.message } satisfies Refusal;
    throw err;
  }
  const properties = Object.create(null) as Record<string, string>;
  const send: C2dSend = { body: stored.body, properties };
  for (const key of Object.keys(stored.properties)) {
    // Other `$.` keys (to, user id, expiry) are the hub's to set on a C2D message.
    if (!key.startsWith("$.")) properties[key] = stored.properties[key] as string;
  }
  for (const [key, field] of FIELDS) {
    const v = stored.properties[key];
    if (v !== undefined) send[field] = v;
  }
  send.ack = properties["iothub-ack"];
  if (m.absolute_expiry_time instanceof Date && !Number.isNaN(m.absolute_expiry_time.getTime()))
    send.expiresAt = m.absolute_expiry_time;
  return { deviceId, send };
}

/** The condition a refused store is answered with. */
function refusalOf(err: unknown): Refusal {
  if (err instanceof C2dRefused) {
    if (err.reason === "device-not-found")
      return { condition: "amqp:not-found", description: `DeviceNotFound: ${err.message}` };
    if (err.reason === "too-large")
      return { condition: "amqp:link:message-size-exceeded", description: err.message };
    return { condition: "com.microsoft:argument-error", description: err.message };
  }
  if (
    err instanceof EdgeHubError &&
    (err.code === ErrorCodes.STORE_FULL || err.code === ErrorCodes.STORE_SHARE_EXCEEDED)
  )
    return { condition: "amqp:resource-limit-exceeded", description: err.message };
  return { condition: "amqp:internal-error", description: "the message could not be stored" };
}

/** One service client's C2D sender link. */
export class C2dSendLink implements ServiceLink {
  readonly #conn: ServiceConnection;
  readonly #receiver: Receiver;
  readonly #ctx: AmqpServiceContext;
  readonly #authorized: () => boolean;
  #closed = false;

  constructor(
    conn: ServiceConnection,
    receiver: Receiver,
    ctx: AmqpServiceContext,
    authorized: () => boolean,
  ) {
    this.#conn = conn;
    this.#receiver = receiver;
    this.#ctx = ctx;
    this.#authorized = authorized;
    receiver.add_credit(CREDIT);
  }

  onMessage(delivery: Delivery, message: Message): void {
    // Counted with the connection's telemetry: many links cannot queue more than it allows.
    this.#conn.hold();
    void this.#store(message).then(
      () => this.#done(delivery),
      (err: unknown) => {
        const refusal =
          typeof err === "object" && err !== null && "condition" in err ? (err as Refusal) : refusalOf(err);
        if (refusal.condition === "amqp:internal-error")
          this.#ctx.log.log("warn", "c2d-send-failed", { reason: (err as Error).message });
        this.#done(delivery, refusal);
      },
    );
  }

  async #store(message: Message): Promise<void> {
    if (!this.#authorized())
      throw {
        condition: "amqp:unauthorized-access",
        description: "the service token has expired",
      } satisfies Refusal;
    const { deviceId, send } = readSend(message);
    await sendCloudToDevice(this.#ctx.registry, this.#ctx.delivery, deviceId, send);
  }

  #done(delivery: Delivery, refusal?: Refusal): void {
    this.#conn.release();
    this.#conn.settle(delivery, refusal);
    if (!this.#closed && this.#receiver.is_open()) this.#receiver.add_credit(1);
  }

  close(): void {
    this.#closed = true;
  }
}
