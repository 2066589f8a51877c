/**
 * The direct-method links of one identity: the client's receiver and sender on
 * `/devices/{d}/methods/devicebound` (a module's on `/devices/{d}/modules/{m}/methods/devicebound`),
 * as the Node SDK uses them (azure-iot-device-amqp `amqp_device_method_client.js`). A call
 * goes out on our sender with the method's name in the `IoThub-methodname` application
 * property and the call's id as correlation id; the answer comes back on our receiver with
 * that correlation id and the status in `IoThub-status`, and completes the call through the
 * same DirectMethods as on MQTT. The client listens for methods while our sender is attached.
 */
import rhea, { type Delivery, type Message, type Sender } from "rhea";
import type { ClientConnection } from "../../protocol/client.js";
import type { LinkOwner } from "./telemetry.js";

/** Direct method calls to one identity. */
export class MethodChannel {
  readonly #owner: LinkOwner;
  readonly #client: ClientConnection & { readonly principal: { clientId: string } };
  #sender: Sender | undefined;

  constructor(owner: LinkOwner, client: ClientConnection & { readonly principal: { clientId: string } }) {
    this.#owner = owner;
    this.#client = client;
  }

  get listening(): boolean {
    return this.#sender?.is_open() === true;
  }

  /** Our sender (the client's receiver) attached: calls go on it. */
  attachSender(sender: Sender): void {
    this.#sender = sender;
    this.#owner.ctx.subscribed(this.#client, "methods");
  }

  /** A link of the channel ended. */
  detached(link: unknown): void {
    if (link !== this.#sender) return;
    this.#sender = undefined;
    this.#owner.ctx.unsubscribed?.(this.#client, "methods");
  }

  /** Sends call `rid` of method `name`. */
  call(name: string, rid: string, payload: Buffer): void {
    if (this.#owner.closed || !this.#sender?.is_open()) return;
    this.#sender.send({
      correlation_id: rid,
      application_properties: { "IoThub-methodname": name },
      body: rhea.message.data_section(payload),
    });
  }

  /** An answer on our receiver. */
  onResponse(delivery: Delivery, m: Message): void {
    this.#owner.settle(delivery);
    const rid: unknown = m.correlation_id;
    const app: unknown = m.application_properties;
    const status: unknown =
      typeof app === "object" && app !== null && Object.hasOwn(app, "IoThub-status")
        ? (app as Record<string, unknown>)["IoThub-status"]
        : undefined;
    if (typeof rid !== "string" || typeof status !== "number" || !Number.isInteger(status)) return;
    const body: unknown = m.body;
    const content = (body as { content?: unknown } | undefined)?.content;
    const bytes = Buffer.isBuffer(content)
      ? content
      : typeof body === "string"
        ? Buffer.from(body)
        : Buffer.alloc(0);
    this.#owner.ctx.methods.respond(this.#client.principal.clientId, rid, status, bytes);
  }
}
