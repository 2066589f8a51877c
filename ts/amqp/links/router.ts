/**
 * What each link of a connection is, by the address the client attached it to
 * (../../vocabulary.ts `ADDRESSES`), and the identity it serves: set when the client
 * attaches it (or refused: detached at once with `amqp:unauthorized-access` or
 * `amqp:not-found`), undone when it goes, and where its messages go in between.
 */
import type { Delivery, EventContext, Receiver, Sender } from "rhea";
import { ADDRESSES } from "../../vocabulary.js";
import type { AmqpClient } from "../client.js";
import type { Refusal } from "../dispositions.js";
import { type EventHubHost, type EventHubRole, eventHubRole } from "../event-hub/links.js";
import { answerLinkProperties } from "../link-properties.js";
import { DeliveryLink } from "./c2d.js";
import type { FeedbackLink } from "./feedback.js";
import { type ServiceSession, type ServiceSide, serviceC2dLink } from "./service.js";
import { type LinkOwner, TelemetryLink } from "./telemetry.js";

/** Put-token requests answered at once. */
const CBS_CREDIT = 4;
/** Twin requests, method answers and service messages in flight on one link. */
const CHANNEL_CREDIT = 16;
/** Links one connection may hold. */
const MAX_LINKS = 64;

type Ids = { deviceId: string; moduleId?: string | undefined };
type Link = Sender | Receiver;

type Role =
  | { kind: "cbs-in" }
  | { kind: "cbs-out" }
  | { kind: "telemetry"; client: AmqpClient; link: TelemetryLink }
  | { kind: "delivery"; client: AmqpClient; link: DeliveryLink }
  | { kind: "twin-in" | "twin-out" | "methods-in" | "methods-out"; client: AmqpClient }
  | { kind: "service-c2d"; onMessage: ReturnType<typeof serviceC2dLink> }
  | { kind: "service-feedback"; link: FeedbackLink }
  | EventHubRole
  | { kind: "refused" };

/** `deviceId[/moduleId]`. */
export function clientIdOf(ids: Ids): string {
  return ids.moduleId === undefined ? ids.deviceId : `${ids.deviceId}/${ids.moduleId}`;
}

/** What the router needs from its connection. */
export interface RouterHost extends LinkOwner, Omit<EventHubHost, "ctx"> {
  /** The identity `ids` names if the connection holds it (or its certificate proves it now). */
  clientFor(ids: Ids): AmqpClient | undefined;
  /** The service login, once a policy token was put; the service side, when the hub serves it. */
  readonly service: ServiceSession | undefined;
  readonly serviceSide: ServiceSide | undefined;
  /** A put-token request on `$cbs`. */
  onPutToken(receiver: Receiver, delivery: Delivery, message: EventContext["message"]): void;
  /** Past {@link MAX_LINKS}: the connection ends. */
  close(reason: string): void;
}

/** The links of one connection. */
export class LinkRouter {
  readonly #host: RouterHost;
  readonly #roles = new WeakMap<Link, Role>();
  #links = 0;
  /** Where `$cbs` answers go. */
  cbsOut: Sender | undefined;

  constructor(host: RouterHost) {
    this.#host = host;
  }

  /** The client attached `link`: routed by its address, or refused. */
  opened(link: Link): void {
    if (++this.#links > MAX_LINKS) {
      this.#host.close("too-many-links");
      return;
    }
    // The attach the client sent (rhea's typings leave `remote` out).
    const attach = (link as unknown as { remote: { attach?: Record<"source" | "target", unknown> } }).remote
      .attach;
    const terminus = link.is_receiver() ? attach?.target : attach?.source;
    const named: unknown = (terminus as { address?: unknown } | undefined)?.address;
    const address = typeof named === "string" ? named : undefined;
    // Our end of the link names the same address, and repeats IoT Hub's link properties.
    if (link.is_receiver()) link.set_target({ address: address ?? "" });
    else link.set_source({ address: address ?? "" });
    const said = answerLinkProperties(link, attach);
    const role = address === undefined ? undefined : this.#route(link, address);
    if (!role || "condition" in role) {
      const error = role ?? { condition: "amqp:not-found", description: "the link has no address" };
      this.#roles.set(link, { kind: "refused" });
      this.#host.ctx.log.log("warn", "amqp-link-refused", { address, ...error });
      link.close(error);
      return;
    }
    this.#roles.set(link, role);
    this.#host.ctx.log.log("debug", "amqp-link-opened", { address, kind: role.kind, ...said });
  }

  /** What the link at `address` is, or why it is refused. */
  #route(link: Link, address: string): Role | Refusal {
    const host = this.#host;
    // Some SDKs name the whole URI: the path is what counts.
    const path = address.replace(/^amqps?:\/\/[^/]*/i, "");
    if (path === ADDRESSES.cbs || address === ADDRESSES.cbs) {
      if (link.is_receiver()) {
        (link as Receiver).add_credit(CBS_CREDIT);
        return { kind: "cbs-in" };
      }
      this.cbsOut = link as Sender;
      return { kind: "cbs-out" };
    }
    const side = host.serviceSide;
    // A root's Event Hubs–compatible endpoint: its addresses have no leading `/`.
    if (side?.eventHub) {
      const role = eventHubRole(host, link, path.replace(/^\//, ""), side.eventHub);
      if (role) return role;
    }
    const service = path.toLowerCase();
    if (side && (service === ADDRESSES.serviceC2d || service === ADDRESSES.serviceFeedback)) {
      const session = host.service;
      if (!session)
        return {
          condition: "amqp:unauthorized-access",
          description: `${path} needs an iothubowner token put on $cbs`,
        };
      // The client sends C2D (our receiver) and reads feedback (our sender).
      if ((service === ADDRESSES.serviceC2d) !== link.is_receiver())
        return { condition: "amqp:not-allowed", description: `${path} is not served in this direction` };
      if (service === ADDRESSES.serviceC2d) {
        session.adopt(link);
        (link as Receiver).add_credit(CHANNEL_CREDIT);
        const onMessage = serviceC2dLink(host, link as Receiver, side, () => session.valid);
        return { kind: "service-c2d", onMessage };
      }
      if (!side.feedback)
        return { condition: "amqp:not-found", description: "feedback is served by a root hub" };
      const feedback = side.feedback.attach(link as Sender);
      session.adopt(link, () => feedback.close());
      return { kind: "service-feedback", link: feedback };
    }
    const twin = ADDRESSES.twin.parse(path) ?? ADDRESSES.moduleTwin.parse(path);
    const methods = twin ? undefined : (ADDRESSES.methods.parse(path) ?? ADDRESSES.moduleMethods.parse(path));
    if (twin || methods) return this.#channel(link, (twin ?? methods) as Ids, twin ? "twin" : "methods");
    const events = ADDRESSES.telemetry.parse(path) ?? ADDRESSES.moduleEvents.parse(path);
    const c2d = ADDRESSES.c2d.parse(path);
    const ids = events ?? c2d;
    if (!ids) return { condition: "amqp:not-found", description: `${address} is not served here` };
    const client = host.clientFor(ids);
    const unauthorized = {
      condition: "amqp:unauthorized-access",
      description: `this connection holds no token for ${address}`,
    };
    if (!client) return unauthorized;
    const { authenticator } = host.ctx;
    if (link.is_receiver()) {
      if (!events || !authenticator.allows(client.principal, "telemetry", ids)) return unauthorized;
      client.adopt(link);
      return { kind: "telemetry", client, link: new TelemetryLink(host, link as Receiver, client.principal) };
    }
    // A device receives C2D on devicebound; a module its inputs on its events address.
    const kind = c2d ? "c2d" : "module-inputs";
    if ((kind === "c2d") !== (client.principal.moduleId === undefined)) return unauthorized;
    if (!authenticator.allows(client.principal, kind, ids)) return unauthorized;
    client.adopt(link);
    const delivery = new DeliveryLink(link as Sender);
    client.listen(delivery, kind);
    return { kind: "delivery", client, link: delivery };
  }

  /**
   * A twin or methods link: always the identity's own (as MQTT's twin and method topics),
   * so the identity must be one the connection holds. Our senders on them send settled:
   * answers, notifications and calls are at most once, as IoT Hub sends them at QoS 0.
   */
  #channel(link: Link, ids: Ids, channel: "twin" | "methods"): Role | Refusal {
    const client = this.#host.clientFor(ids);
    if (!client)
      return {
        condition: "amqp:unauthorized-access",
        description: `this connection holds no token for ${clientIdOf(ids)}`,
      };
    client.adopt(link);
    if (link.is_receiver()) {
      (link as Receiver).add_credit(CHANNEL_CREDIT);
      return { kind: channel === "twin" ? "twin-in" : "methods-in", client };
    }
    (link as unknown as { local: { attach: { snd_settle_mode: number } } }).local.attach.snd_settle_mode = 1;
    if (channel === "twin") client.twin.attachSender(link as Sender);
    else client.methods.attachSender(link as Sender);
    return { kind: channel === "twin" ? "twin-out" : "methods-out", client };
  }

  /** `link` went away (`why`: the rhea event): what it served is undone. */
  closed(link: Link, why: string): void {
    const role = this.#roles.get(link);
    if (!role) return;
    this.#roles.delete(link);
    this.#links--;
    if (role.kind === "cbs-out" && this.cbsOut === link) this.cbsOut = undefined;
    if (role.kind === "service-c2d" || role.kind === "service-feedback") this.#host.service?.drop(link);
    if (role.kind === "delivery") role.client.unlisten(role.link, why);
    if (role.kind === "twin-out") role.client.twin.detached(link);
    if (role.kind === "methods-out") role.client.methods.detached(link);
    if (role.kind === "event-hub") role.end();
    if ("client" in role) role.client.drop(link);
    if (!link.is_closed()) link.close();
  }

  /** A message on one of our receivers. */
  message(e: EventContext): void {
    const receiver = e.receiver;
    const role = receiver && this.#roles.get(receiver);
    const delivery = e.delivery;
    if (this.#host.closed || !role || !delivery) return;
    const message = e.message;
    if (role.kind === "telemetry") role.link.onMessage(delivery, message as never);
    else if (role.kind === "cbs-in") this.#host.onPutToken(receiver, delivery, message);
    else if (role.kind === "service-c2d") role.onMessage(delivery, message);
    else if (role.kind === "event-hub") role.onMessage?.(delivery, message);
    else if (!message || Buffer.isBuffer(message))
      this.#host.settle(delivery, { condition: "amqp:decode-error", description: "not an AMQP message" });
    else if (role.kind === "twin-in") role.client.twin.onRequest(delivery, message);
    else if (role.kind === "methods-in") role.client.methods.onResponse(delivery, message);
    if (role.kind === "twin-in" || role.kind === "methods-in") receiver.add_credit(1);
  }

  /** The client settled `delivery` on one of our delivery or feedback links. */
  settled(sender: Sender, delivery: Delivery, outcome: "accepted" | "rejected" | "released"): void {
    const role = this.#roles.get(sender);
    if (role?.kind === "delivery") role.link.settled(delivery, outcome);
    else if (role?.kind === "service-feedback") role.link.settled(delivery, outcome);
  }
}
