/**
 * The twin links of one identity: the client's sender and receiver on `/devices/{d}/twin`
 * (a module's on `/devices/{d}/modules/{m}/twin`), as the Node SDK uses them
 * (azure-iot-device-amqp `amqp_twin_client.js`;
 * `Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Amqp/linkhandlers/TwinReceivingLinkHandler.cs`).
 * A request names its `operation` (and `resource`) in the message annotations and carries a
 * correlation id; the answer goes back on our sender with that correlation id, the status
 * in the `status` annotation (and `version` after a reported patch), the body as one data
 * section. GET and PATCH are answered by the same function as on MQTT
 * (../../protocol/twin-requests.ts); PUT and DELETE of
 * `/notifications/twin/properties/desired` start and stop desired-property notifications,
 * sent on our sender without a correlation id.
 */
import rhea, { type Delivery, type Message, type Sender } from "rhea";
import type { ClientConnection } from "../../protocol/client.js";
import { answerTwinRequest, type TwinAnswer } from "../../protocol/twin-requests.js";
import type { TwinProperties } from "../../twin/twins.js";
import type { LinkOwner } from "./telemetry.js";

const DESIRED = "/notifications/twin/properties/desired";

/** An annotation of a request, if it is text. */
function annotation(m: Message, key: string): string | undefined {
  const a: unknown = m.message_annotations;
  if (typeof a !== "object" || a === null || !Object.hasOwn(a, key)) return undefined;
  const v: unknown = (a as Record<string, unknown>)[key];
  return typeof v === "string" ? v : undefined;
}

/** The body bytes of a request (one data section, or none). */
function payload(m: Message): Buffer {
  const body: unknown = m.body;
  const content = (body as { content?: unknown } | undefined)?.content;
  if (Buffer.isBuffer(content)) return content;
  if (typeof body === "string") return Buffer.from(body);
  return Buffer.alloc(0);
}

/** Twin requests and notifications of one identity. */
export class TwinChannel {
  readonly #owner: LinkOwner;
  readonly #client: ClientConnection & { readonly principal: { clientId: string } };
  #sender: Sender | undefined;
  #desired = false;

  constructor(owner: LinkOwner, client: ClientConnection & { readonly principal: { clientId: string } }) {
    this.#owner = owner;
    this.#client = client;
  }

  /** Our sender (the client's receiver) attached: answers and notifications go on it. */
  attachSender(sender: Sender): void {
    this.#sender = sender;
  }

  /** A link of the channel ended; without a sender nothing listens for desired properties. */
  detached(link: unknown): void {
    if (link !== this.#sender) return;
    this.#sender = undefined;
    this.#stopDesired();
  }

  /** A request on our receiver. */
  onRequest(delivery: Delivery, m: Message): void {
    this.#owner.settle(delivery);
    const cid: unknown = m.correlation_id;
    const operation = annotation(m, "operation");
    const resource = annotation(m, "resource");
    const { ctx } = this.#owner;
    const clientId = this.#client.principal.clientId;
    if (operation === "GET" || (operation === "PATCH" && resource === "/properties/reported")) {
      const kind = operation === "GET" ? "twin-get" : "twin-reported";
      this.#owner.hold();
      const fresh = kind === "twin-get" && ctx.refreshTwin ? ctx.refreshTwin(clientId) : Promise.resolve();
      // A refresh that fails leaves the cached twin to answer with.
      void fresh
        .catch(() => undefined)
        .then(() => answerTwinRequest(ctx.twins, ctx.log, clientId, kind, payload(m)))
        .then((a) => {
          this.#owner.release();
          this.#answer(cid, a);
        });
      return;
    }
    if ((operation === "PUT" || operation === "DELETE") && resource === DESIRED) {
      if (operation === "PUT" && !this.#desired) {
        this.#desired = true;
        ctx.subscribed(this.#client, "twin-desired");
      } else if (operation === "DELETE") this.#stopDesired();
      this.#answer(cid, { status: 200, body: "" });
      return;
    }
    this.#answer(cid, {
      status: 400,
      body: JSON.stringify({
        errorCode: 400004,
        message: `unsupported twin operation ${operation} ${resource}`,
      }),
    });
  }

  #stopDesired(): void {
    if (!this.#desired) return;
    this.#desired = false;
    this.#owner.ctx.unsubscribed?.(this.#client, "twin-desired");
  }

  #answer(cid: unknown, a: TwinAnswer): void {
    if (this.#owner.closed || !this.#sender?.is_open()) return;
    const annotations: Record<string, unknown> = { status: a.status };
    if (a.version !== undefined) annotations.version = a.version;
    this.#sender.send({
      correlation_id: cid as Message["correlation_id"],
      message_annotations: annotations,
      body: rhea.message.data_section(Buffer.from(a.body)),
    });
  }

  /** A desired-properties patch: sent if the client asked for them. */
  desiredChanged(patch: TwinProperties): void {
    if (!this.#desired || this.#owner.closed || !this.#sender?.is_open()) return;
    this.#sender.send({ body: rhea.message.data_section(Buffer.from(JSON.stringify(patch))) });
  }
}
