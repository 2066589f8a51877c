/**
 * Cloud-to-device messages: queued durably per device (`$c2d/{deviceId}`, with a TTL),
 * delivered in order at QoS 1 on `devices/{id}/messages/devicebound/{bag}` when the device
 * listens, and removed on its PUBACK. A message whose PUBACK never came is delivered again
 * on the next connection (at least once).
 */
import type { Logger } from "../log.js";
import { encodePropertyBag } from "../protocol/topics.js";
import type { MessageStore } from "../store/index.js";

/** A message for a device. */
export interface C2DMessage {
  body: Buffer;
  /** Application properties. */
  properties?: Record<string, string>;
  messageId?: string;
  correlationId?: string;
  contentType?: string;
  contentEncoding?: string;
  /** Time to live in seconds (IoT Hub's default: 1 hour). */
  ttlSecs?: number;
}

/** The part of a connection C2D needs. */
export interface C2DTarget {
  listensForC2D(): boolean;
  /** Publishes at QoS 1; resolves on the client's PUBACK, rejects if the connection closes first. */
  deliverQos1(topic: string, payload: Buffer): Promise<void>;
}

const SYSTEM: Record<string, keyof C2DMessage> = {
  "$.mid": "messageId",
  "$.cid": "correlationId",
  "$.ct": "contentType",
  "$.ce": "contentEncoding",
};

export function c2dQueue(deviceId: string): string {
  return `$c2d/${deviceId}`;
}

/** Queues and delivers C2D messages. */
export class CloudToDevice {
  readonly #store: MessageStore;
  readonly #find: (deviceId: string) => C2DTarget | undefined;
  readonly #log: Logger;
  readonly #pumping = new Set<string>();

  constructor(store: MessageStore, find: (deviceId: string) => C2DTarget | undefined, log: Logger) {
    this.#store = store;
    this.#find = find;
    this.#log = log;
  }

  /** Queues `m` for `deviceId` durably, then delivers it if the device listens. */
  async send(deviceId: string, m: C2DMessage): Promise<void> {
    const properties: Record<string, string> = { ...m.properties };
    for (const [key, field] of Object.entries(SYSTEM)) {
      const v = m[field];
      if (typeof v === "string") properties[key] = v;
    }
    properties["$.to"] = `/devices/${deviceId}/messages/devicebound`;
    await this.#store.append(c2dQueue(deviceId), [{ body: m.body, properties, ttlSecs: m.ttlSecs ?? 3600 }]);
    this.pump(deviceId);
  }

  /** Delivers what is queued for `deviceId`, in order, while it listens. One pump per device. */
  pump(deviceId: string): void {
    if (this.#pumping.has(deviceId)) return;
    this.#pumping.add(deviceId);
    this.#drain(deviceId)
      .catch((err: unknown) =>
        this.#log.log("warn", "c2d-delivery-stopped", { deviceId, reason: (err as Error).message }),
      )
      .finally(() => this.#pumping.delete(deviceId));
  }

  async #drain(deviceId: string): Promise<void> {
    const queue = c2dQueue(deviceId);
    for (;;) {
      const target = this.#find(deviceId);
      if (!target?.listensForC2D()) return;
      const batch = await this.#store.read(queue, { limit: 50 });
      if (batch.length === 0) return;
      for (const m of batch) {
        const bag = encodePropertyBag(m.properties);
        await target.deliverQos1(`devices/${deviceId}/messages/devicebound/${bag}`, m.body);
        await this.#store.ack(queue, m.offset);
      }
    }
  }
}
