/**
 * Durable delivery to devices and modules: cloud-to-device messages (queue `$c2d/{device}`,
 * topic `devices/{d}/messages/devicebound/{bag}`) and module inputs (queue
 * `$inputs/{device}/{module}`, topic `devices/{d}/modules/{m}/inputs/{input}/{bag}`).
 * Messages are stored first (with a TTL), delivered in order at QoS 1 while the client
 * listens, a window of them at a time, and removed on their PUBACKs; one whose PUBACK never
 * came is delivered again on the next connection (at least once). Each client has its own
 * pump: one that does not acknowledge holds back only itself.
 */
import type { Logger } from "../log.js";
import { encodePropertyBag } from "../protocol/topics.js";
import { INPUT_PROPERTY } from "../routing/router.js";
import type { MessageStore, StoredMessage } from "../store/index.js";

/** A message for a device or a module input. */
export interface DeviceMessage {
  body: Buffer;
  /** Application properties. */
  properties?: Record<string, string>;
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
  /** Time to live in seconds (IoT Hub's C2D default: 1 hour). */
  ttlSecs?: number;
}

/** What the delivery needs from a connection. */
export interface DeliveryTarget {
  /** True once the client subscribed to its C2D messages (device) or its inputs (module). */
  listensForDeliveries(): boolean;
  /** Publishes at QoS 1; resolves on the client's PUBACK, rejects if the connection closes first. */
  deliverQos1(topic: string, payload: Buffer): Promise<void>;
}

const SYSTEM: Record<string, keyof DeviceMessage> = {
  "$.mid": "messageId",
  "$.cid": "correlationId",
  "$.ct": "contentType",
  "$.ce": "contentEncoding",
};
/** Deliveries sent before waiting for their PUBACKs, and the bytes they may take. */
const WINDOW = 64;
const WINDOW_BYTES = 1024 * 1024;
/** Stored with a module-input message: the input's name (not sent in the bag). */
const INPUT = INPUT_PROPERTY;

/** The store queue of a client id (`deviceId` or `deviceId/moduleId`). */
export function deliveryQueue(clientId: string): string {
  return clientId.includes("/") ? `$inputs/${clientId}` : `$c2d/${clientId}`;
}

/** Queues and delivers messages to devices and module inputs. */
export class DeviceDelivery {
  readonly #store: MessageStore;
  readonly #find: (clientId: string) => DeliveryTarget | undefined;
  readonly #log: Logger;
  readonly #pumping = new Set<string>();
  /** Clients asked to pump while their drain was running: drain again when it ends. */
  readonly #again = new Set<string>();

  constructor(store: MessageStore, find: (clientId: string) => DeliveryTarget | undefined, log: Logger) {
    this.#store = store;
    this.#find = find;
    this.#log = log;
  }

  #properties(m: DeviceMessage): Record<string, string> {
    const properties: Record<string, string> = { ...m.properties };
    for (const [key, field] of Object.entries(SYSTEM)) {
      const v = m[field];
      if (typeof v === "string") properties[key] = v;
    }
    return properties;
  }

  async #queue(
    clientId: string,
    m: DeviceMessage,
    properties: Record<string, string>,
    ttl: number,
  ): Promise<void> {
    await this.#store.append(deliveryQueue(clientId), [
      { body: m.body, properties, ttlSecs: m.ttlSecs ?? ttl },
    ]);
    this.pump(clientId);
  }

  /** Forgets everything queued for `clientId` (its identity was deleted). */
  async purge(clientId: string): Promise<void> {
    const queue = deliveryQueue(clientId);
    const q = (await this.#store.stats()).queues.find((x) => x.name === queue);
    if (q && q.tail > 0 && q.ackedUpTo < q.tail - 1) await this.#store.ack(queue, q.tail - 1);
  }

  /** Queues a cloud-to-device message for `deviceId`, then delivers it if the device listens. */
  sendC2D(deviceId: string, m: DeviceMessage): Promise<void> {
    const properties = this.#properties(m);
    properties["$.to"] = `/devices/${deviceId}/messages/devicebound`;
    return this.#queue(deviceId, m, properties, 3600);
  }

  /** Queues a message for input `input` of module `deviceId/moduleId` (routes feed this). */
  sendToInput(deviceId: string, moduleId: string, input: string, m: DeviceMessage): Promise<void> {
    const properties = this.#properties(m);
    properties[INPUT] = input;
    return this.#queue(`${deviceId}/${moduleId}`, m, properties, 7200);
  }

  /** Delivers what is queued for `clientId`, in order, while it listens. One pump per client. */
  pump(clientId: string): void {
    if (this.#pumping.has(clientId)) {
      // A message stored, or a new connection, while a drain runs: it may have read
      // before the message or hold the old connection; run once more after it.
      this.#again.add(clientId);
      return;
    }
    this.#pumping.add(clientId);
    this.#drain(clientId)
      .catch((err: unknown) =>
        this.#log.log("warn", "delivery-stopped", { clientId, reason: (err as Error).message }),
      )
      .finally(() => {
        this.#pumping.delete(clientId);
        if (this.#again.delete(clientId)) this.pump(clientId);
      });
  }

  async #drain(clientId: string): Promise<void> {
    const queue = deliveryQueue(clientId);
    const [deviceId, moduleId] = clientId.split("/");
    for (;;) {
      const target = this.#find(clientId);
      if (!target?.listensForDeliveries()) return;
      this.#again.delete(clientId);
      const batch = await this.#store.read(queue, { limit: WINDOW, maxBytes: WINDOW_BYTES });
      if (batch.length === 0) return;
      // Pipelined: the whole window goes out at once (in order on the connection), and the
      // queue is acknowledged up to the last message of the contiguous prefix the client acked.
      const results = await Promise.allSettled(
        batch.map((m) => {
          const { [INPUT]: input, ...rest } = m.properties;
          const bag = encodePropertyBag(rest);
          const topic =
            moduleId === undefined
              ? `devices/${deviceId}/messages/devicebound/${bag}`
              : `devices/${deviceId}/modules/${moduleId}/inputs/${input ?? "input1"}/${bag}`;
          return target.deliverQos1(topic, m.body);
        }),
      );
      let acked = -1;
      for (const [i, r] of results.entries()) {
        if (r.status !== "fulfilled") break;
        acked = (batch[i] as StoredMessage).offset;
      }
      if (acked >= 0) await this.#store.ack(queue, acked);
      // The connection went away mid-window: the rest goes again on the next one.
      if (acked !== batch.at(-1)?.offset) return;
    }
  }
}
