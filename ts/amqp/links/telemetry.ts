/**
 * The telemetry link: the client's sender on `/devices/{d}/messages/events` (a module's on
 * `/devices/{d}/modules/{m}/messages/events`), our receiver. Each message goes to the router
 * as the MQTT head hands over a PUBLISH, and its disposition `accepted` is sent only once
 * the store has it durably (where MQTT sends PUBACK); a store refusal is `rejected` with the
 * reason, and the client may send it again. Credit is the backpressure: a link holds at most
 * {@link CREDIT} messages not yet stored, and gets one more credit per stored message.
 */
import type { Delivery, Message, Receiver } from "rhea";
import type { Principal } from "../../auth/authenticator.js";
import type { EdgeHubError } from "../../errors.js";
import type { ConnectionContext } from "../../protocol/client.js";
import { fromAmqp, UnsupportedMessage } from "../message.js";

/** Messages a link may have in flight to the store. */
export const CREDIT = 64;

/** What a link needs from its connection. */
export interface LinkOwner {
  readonly ctx: ConnectionContext;
  /** One more message waiting for the store (past a cap the socket stops being read). */
  hold(): void;
  /** A held message is answered. */
  release(): void;
  /** True once the connection is closed (answers go nowhere). */
  readonly closed: boolean;
  /** Accepts `delivery`, or rejects it with `error`. */
  settle(delivery: Delivery, error?: { condition: string; description: string }): void;
}

/** Takes a client's telemetry on one link. */
export class TelemetryLink {
  readonly #owner: LinkOwner;
  readonly #receiver: Receiver;
  readonly #principal: Principal;

  constructor(owner: LinkOwner, receiver: Receiver, principal: Principal) {
    this.#owner = owner;
    this.#receiver = receiver;
    this.#principal = principal;
    receiver.add_credit(CREDIT);
  }

  /** A message arrived on the link. */
  onMessage(delivery: Delivery, message: Message | Buffer): void {
    const { ctx } = this.#owner;
    let stored: { body: Buffer; properties: Record<string, string> };
    try {
      if (Buffer.isBuffer(message))
        throw new UnsupportedMessage("the message format must be 0 (AMQP messages)");
      stored = fromAmqp(message);
    } catch (err) {
      this.#owner.settle(delivery, { condition: "amqp:decode-error", description: (err as Error).message });
      this.#receiver.add_credit(1);
      return;
    }
    if (stored.body.length > ctx.maxMessageBytes) {
      this.#owner.settle(delivery, {
        condition: "amqp:link:message-size-exceeded",
        description: `the body is over ${ctx.maxMessageBytes} bytes`,
      });
      this.#receiver.add_credit(1);
      return;
    }
    const p = this.#principal;
    const telemetry = {
      deviceId: p.deviceId,
      body: stored.body,
      properties: stored.properties,
      forwarded: p.via !== undefined,
    };
    this.#owner.hold();
    ctx.router.accept(
      p.moduleId === undefined ? telemetry : { ...telemetry, moduleId: p.moduleId },
      (err) => {
        this.#owner.release();
        if (this.#owner.closed) return;
        if (err) {
          const e = err as EdgeHubError;
          ctx.log.log("warn", "amqp-message-refused", {
            clientId: p.clientId,
            code: e.code,
            reason: e.message,
          });
          // Unlike MQTT 3.1.1, AMQP can say no to one message: the client is told and may retry.
          this.#owner.settle(delivery, { condition: "amqp:resource-limit-exceeded", description: e.message });
        } else this.#owner.settle(delivery);
        if (this.#receiver.is_open()) this.#receiver.add_credit(1);
      },
    );
  }
}
