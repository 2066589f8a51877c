/**
 * One identity on an AMQP connection. A connection may carry several (each with its own
 * token put on `$cbs`), and each is registered with the hub on its own: the hub delivers
 * through it and closes it (taken over, revoked, token expired) without touching the
 * others. Closing it detaches its links with `amqp:unauthorized-access`, as IoT Hub does
 * when a token expires; the connection stays for a new token.
 */
import type { Receiver, Sender } from "rhea";
import type { Principal } from "../auth/authenticator.js";
import type { Outgoing, Settled } from "../delivery/device-delivery.js";
import { type ClientConnection, closedByClient, type ListenKind } from "../protocol/client.js";
import type { TwinProperties } from "../twin/twins.js";
import type { DeliveryLink } from "./links/c2d.js";
import { MethodChannel } from "./links/methods.js";
import type { LinkOwner } from "./links/telemetry.js";
import { TwinChannel } from "./links/twin.js";

/** What a client needs from its connection. */
export interface ClientOwner extends LinkOwner {
  /** The client closed: the connection forgets it. */
  forget(client: AmqpClient): void;
}

/** Longest a timer may wait (setTimeout's bound). */
const MAX_DELAY = 2 ** 31 - 1;

type Link = Sender | Receiver;

export class AmqpClient implements ClientConnection {
  readonly #owner: ClientOwner;
  #principal: Principal;
  readonly #links = new Set<Link>();
  #delivery: { link: DeliveryLink; kind: ListenKind } | undefined;
  #expiry: NodeJS.Timeout | undefined;
  #closed = false;
  /** Twin requests and desired-property notifications. */
  readonly twin: TwinChannel;
  /** Direct method calls. */
  readonly methods: MethodChannel;

  constructor(owner: ClientOwner, principal: Principal) {
    this.#owner = owner;
    this.#principal = principal;
    this.twin = new TwinChannel(owner, this);
    this.methods = new MethodChannel(owner, this);
    this.#armExpiry();
  }

  get principal(): Principal {
    return this.#principal;
  }

  /** A new token for the same identity: it lives until the new expiry. */
  renew(principal: Principal): void {
    this.#principal = principal;
    this.#armExpiry();
  }

  #armExpiry(): void {
    clearTimeout(this.#expiry);
    const at = this.#principal.expiresAt;
    if (at === undefined) return;
    // As IoT Hub: links live no longer than their token; SDKs put a new one before it ends.
    this.#expiry = setTimeout(
      () => this.close("token-expired"),
      Math.min(Math.max(0, at - Date.now()), MAX_DELAY),
    );
    this.#expiry.unref();
  }

  /** A link of this identity: detached when it closes. */
  adopt(link: Link): void {
    this.#links.add(link);
  }

  /** The link went away (detached by the client, or its session or connection ended). */
  drop(link: Link): void {
    this.#links.delete(link);
  }

  /** The client listens on `link` for its C2D messages (device) or inputs (module). */
  listen(link: DeliveryLink, kind: ListenKind): void {
    this.#delivery?.link.close("replaced");
    this.#delivery = { link, kind };
    this.#owner.ctx.subscribed(this, kind);
  }

  /** Its delivery link ended. */
  unlisten(link: DeliveryLink, reason: string): void {
    link.close(reason);
    if (this.#delivery?.link !== link) return;
    const { kind } = this.#delivery;
    this.#delivery = undefined;
    this.#owner.ctx.unsubscribed?.(this, kind);
  }

  listensForDeliveries(): boolean {
    return this.#delivery !== undefined;
  }

  deliverMessage(m: Outgoing, dup: boolean): Promise<Settled> {
    return this.#delivery?.link.send(m, dup) ?? Promise.reject(new Error("not listening"));
  }

  listensForMethods(): boolean {
    return this.methods.listening;
  }

  callMethod(name: string, rid: string, payload: Buffer): void {
    this.methods.call(name, rid, payload);
  }

  desiredChanged(patch: TwinProperties): void {
    this.twin.desiredChanged(patch);
  }

  close(reason: string, fields: Record<string, unknown> = {}): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#expiry);
    const ctx = this.#owner.ctx;
    ctx.unregister(this.#principal.clientId, this);
    this.#delivery?.link.close(reason);
    this.#delivery = undefined;
    // The client closed its connection (or it is gone): its links end with it, and an error
    // detach would tell it of a refusal that never happened. Otherwise (taken over, token
    // expired, hub closing) each link says why.
    const byClient = closedByClient(reason);
    if (!byClient)
      for (const link of this.#links)
        if (!link.is_closed()) link.close({ condition: "amqp:unauthorized-access", description: reason });
    this.#links.clear();
    this.#owner.forget(this);
    const level = byClient ? "info" : "warn";
    ctx.log.log(level, "client-closed", {
      clientId: this.#principal.clientId,
      protocol: "amqp",
      reason,
      ...fields,
    });
  }
}
