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

  /**
   * Delivers while the client listens: up to {@link WINDOW} messages unacknowledged, the
   * next one sent as each PUBACK comes back (so data keeps flowing and no round waits on a
   * delayed TCP ACK), the queue acknowledged up to the contiguous prefix the client acked.
   */
  async #drain(clientId: string): Promise<void> {
    const queue = deliveryQueue(clientId);
    const [deviceId, moduleId] = clientId.split("/");
    const target = this.#find(clientId);
    if (!target?.listensForDeliveries()) return;
    this.#again.delete(clientId);
    const topicOf = (m: StoredMessage): string => {
      const { [INPUT]: input, ...rest } = m.properties;
      const bag = encodePropertyBag(rest);
      return moduleId === undefined
        ? `devices/${deviceId}/messages/devicebound/${bag}`
        : `devices/${deviceId}/modules/${moduleId}/inputs/${input ?? "input1"}/${bag}`;
    };
    const sent: number[] = [];
    let head = 0;
    const done = new Set<number>();
    let inflight = 0;
    let failed = false;
    let from = 0;
    let buffer: StoredMessage[] = [];
    let wake: (() => void) | undefined;
    const acks = new AckCoalescer(
      (offset) => this.#store.ack(queue, offset),
      // Not acknowledged: delivered again later (at least once).
      (err) => this.#log.log("warn", "delivery-ack-failed", { clientId, reason: (err as Error).message }),
    );
    const settled = () => {
      inflight--;
      const w = wake;
      wake = undefined;
      w?.();
    };
    for (;;) {
      if (failed || this.#find(clientId) !== target || !target.listensForDeliveries()) break;
      if (buffer.length === 0) {
        buffer = await this.#store.read(queue, { from, limit: WINDOW * 2, maxBytes: WINDOW_BYTES });
        const last = buffer.at(-1);
        if (last) from = last.offset + 1;
        else if (inflight === 0) break;
      }
      while (inflight < WINDOW && buffer.length > 0) {
        const m = buffer.shift() as StoredMessage;
        inflight++;
        sent.push(m.offset);
        target.deliverQos1(topicOf(m), m.body).then(
          () => {
            done.add(m.offset);
            let upTo = -1;
            while (head < sent.length && done.has(sent[head] as number)) {
              upTo = sent[head] as number;
              done.delete(upTo);
              head++;
            }
            if (upTo >= 0) acks.ack(upTo);
            settled();
          },
          () => {
            // The connection went away: what it did not acknowledge goes again on the next one.
            failed = true;
            settled();
          },
        );
      }
      if (inflight >= WINDOW || (buffer.length === 0 && inflight > 0)) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    }
    await acks.idle();
  }
}

/** Acknowledges a queue up to the highest offset asked, one store call at a time. */
class AckCoalescer {
  readonly #ack: (offset: number) => Promise<void>;
  readonly #failed: (err: unknown) => void;
  #wanted = -1;
  #running: Promise<void> | undefined;

  constructor(ack: (offset: number) => Promise<void>, failed: (err: unknown) => void) {
    this.#ack = ack;
    this.#failed = failed;
  }

  ack(offset: number): void {
    if (offset <= this.#wanted) return;
    this.#wanted = offset;
    this.#running ??= this.#run();
  }

  async #run(): Promise<void> {
    let acked = -1;
    try {
      while (acked < this.#wanted) {
        acked = this.#wanted;
        await this.#ack(acked);
      }
    } catch (err) {
      this.#failed(err);
    } finally {
      this.#running = undefined;
    }
  }

  /** Resolves when no acknowledgement is left to write. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }
}
