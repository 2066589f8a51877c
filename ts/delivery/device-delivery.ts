/**
 * Durable delivery to devices and modules: cloud-to-device messages and device endpoints
 * (queues `$c2d/{device}[/pN]`, topic `devices/{d}/messages/devicebound/{bag}`) and module
 * inputs (queues `$inputs/{device}/{module}[/pN]`, topic
 * `devices/{d}/modules/{m}/inputs/{input}/{bag}`); see ../vocabulary.ts for the names and order.
 * Messages are stored first (with a TTL), delivered in order at QoS 1 while the client
 * listens, a window of them at a time, and removed on their PUBACKs; one whose PUBACK never
 * came is delivered again on the next connection (at least once). Each client has its own
 * pump: one that does not acknowledge holds back only itself.
 */
import type { Logger } from "../log.js";
import { encodePropertyBag } from "../protocol/topics.js";
import type { MessageStore, StoredMessage } from "../store/index.js";
import { deliveryQueue, FORWARD_ID, INPUT_PROPERTY, ownerOf, PRIORITIES, TOPICS } from "../vocabulary.js";
import { Cursor } from "./cursor.js";

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
  /**
   * Publishes at QoS 1 (`dup`: sent before, on an earlier connection); resolves on the
   * client's PUBACK, rejects if the connection closes first.
   */
  deliverQos1(topic: string, payload: Buffer, dup?: boolean): Promise<void>;
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

/** Queues and delivers messages to devices and module inputs. */
export class DeviceDelivery {
  readonly #store: MessageStore;
  readonly #find: (clientId: string) => DeliveryTarget | undefined;
  readonly #log: Logger;
  readonly #pumping = new Set<string>();
  /** Clients asked to pump while their drain was running: drain again when it ends. */
  readonly #again = new Set<string>();
  /**
   * Per client, its queues that may hold messages not read yet, each with a count bumped at
   * every append: a drain reads only these, and forgets one it found empty unless
   * something was appended meanwhile.
   */
  readonly #pending = new Map<string, Map<string, number>>();
  /** Per draining client: the rank of the most urgent queue appended to since it last looked. */
  readonly #urgent = new Map<string, number>();
  /** Per draining client waiting for PUBACKs: wakes it to read what was just stored. */
  readonly #wakers = new Map<string, () => void>();
  /** Per connection, where its drains are in each queue. */
  readonly #cursors = new WeakMap<DeliveryTarget, Map<string, Cursor>>();
  /**
   * Per queue, the highest offset sent to any connection of its client since the start: a
   * message at or below it goes again with DUP set (MQTT-3.3.1-1), which an edge relaying it
   * uses to match a resend without a message id. Removed with the client's queues.
   */
  readonly #sentUpTo = new Map<string, number>();
  /** The queues left from before a restart, listed from the store once. */
  #loaded: Promise<void> | undefined;
  /**
   * Told of each message a client completed (PUBACKed), before its queue is acknowledged:
   * the C2D relay then completes the parent's copy (`c2d-relay.ts`).
   */
  onCompleted: ((clientId: string, m: StoredMessage) => void) | undefined;

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

  /** Stores one message in the base queue of `clientId` and delivers it; resolves with its offset. */
  async #queue(
    clientId: string,
    m: DeviceMessage,
    properties: Record<string, string>,
    ttl: number,
  ): Promise<number> {
    const queue = deliveryQueue(clientId);
    const [offset] = await this.#store.append(queue, [
      { body: m.body, properties, ttlSecs: m.ttlSecs ?? ttl },
    ]);
    this.stored(queue);
    return offset as number;
  }

  /** Forgets everything queued for `clientId` (its identity was deleted). */
  async purge(clientId: string): Promise<void> {
    for (const q of (await this.#store.stats()).queues) {
      if (ownerOf(q.name)?.clientId !== clientId) continue;
      if (q.tail > 0 && q.ackedUpTo < q.tail - 1) await this.#store.ack(q.name, q.tail - 1);
      this.#sentUpTo.delete(q.name);
    }
    this.#pending.delete(clientId);
  }

  /** Queues a cloud-to-device message for `deviceId`, then delivers it if the device listens. */
  async sendC2D(deviceId: string, m: DeviceMessage): Promise<void> {
    const properties = this.#properties(m);
    properties["$.to"] = `/devices/${deviceId}/messages/devicebound`;
    await this.#queue(deviceId, m, properties, 3600);
  }

  /**
   * Stores a cloud-to-device message the parent sent for `deviceId` with the parent's
   * properties as they are (`$.to` and `$.mid` included; checked by the caller), for
   * `ttlSecs`; resolves with its offset once it is durable, then delivers it if the device
   * listens.
   */
  relayC2D(
    deviceId: string,
    body: Buffer,
    properties: Record<string, string>,
    ttlSecs: number,
  ): Promise<number> {
    return this.#queue(deviceId, { body }, properties, ttlSecs);
  }

  /** Queues a message for input `input` of module `deviceId/moduleId`. */
  async sendToInput(deviceId: string, moduleId: string, input: string, m: DeviceMessage): Promise<void> {
    const properties = this.#properties(m);
    properties[INPUT] = input;
    await this.#queue(`${deviceId}/${moduleId}`, m, properties, 7200);
  }

  /** Messages were appended to `queue` (routes feed this): delivers them if it is a client's. */
  stored(queue: string): void {
    const owner = ownerOf(queue);
    if (!owner) return;
    this.#mark(owner.clientId, queue, owner.rank);
    this.pump(owner.clientId);
  }

  #mark(clientId: string, queue: string, rank: number): void {
    let pending = this.#pending.get(clientId);
    if (!pending) {
      pending = new Map();
      this.#pending.set(clientId, pending);
    }
    pending.set(queue, (pending.get(queue) ?? 0) + 1);
    if (this.#pumping.has(clientId) && rank < (this.#urgent.get(clientId) ?? PRIORITIES + 1)) {
      this.#urgent.set(clientId, rank);
    }
  }

  /** Lists the delivery queues holding messages from before this process, once. */
  #load(): Promise<void> {
    this.#loaded ??= this.#store.stats().then((s) => {
      for (const q of s.queues) {
        const owner = q.count > 0 ? ownerOf(q.name) : undefined;
        if (owner) this.#mark(owner.clientId, q.name, owner.rank);
      }
    });
    return this.#loaded;
  }

  /** Delivers what is queued for `clientId`, in order, while it listens. One pump per client. */
  pump(clientId: string): void {
    if (this.#pumping.has(clientId)) {
      // A message stored, or a new connection, while a drain runs: it may have read
      // before the message or hold the old connection; run once more after it.
      this.#again.add(clientId);
      this.#wakers.get(clientId)?.();
      return;
    }
    this.#pumping.add(clientId);
    this.#drain(clientId)
      .catch((err: unknown) =>
        this.#log.log("warn", "delivery-stopped", { clientId, reason: (err as Error).message }),
      )
      .finally(() => {
        this.#pumping.delete(clientId);
        this.#urgent.delete(clientId);
        this.#wakers.delete(clientId);
        if (this.#again.delete(clientId)) this.pump(clientId);
      });
  }

  /**
   * Reads the next messages of the most urgent queue of `clientId` that may have some:
   * priorities 0 to 9, then the base queue. A queue read empty is forgotten unless
   * something was appended to it meanwhile.
   */
  async #next(
    clientId: string,
    cursorOf: (queue: string) => Cursor,
  ): Promise<{ cursor: Cursor; rank: number; queue: string; messages: StoredMessage[] } | undefined> {
    const pending = this.#pending.get(clientId);
    if (!pending) return undefined;
    const ranked = [...pending.keys()]
      .map((queue) => ({ queue, rank: ownerOf(queue)?.rank ?? PRIORITIES }))
      .sort((a, b) => a.rank - b.rank);
    for (const { queue, rank } of ranked) {
      const seen = pending.get(queue);
      const cursor = cursorOf(queue);
      const messages = await this.#store.read(queue, {
        from: cursor.from,
        limit: WINDOW * 2,
        maxBytes: WINDOW_BYTES,
      });
      const last = messages.at(-1);
      if (last) {
        cursor.from = last.offset + 1;
        return { cursor, rank, queue, messages };
      }
      if (pending.get(queue) === seen) pending.delete(queue);
    }
    // The map may have been replaced meanwhile (a purge, then a new message): keep that one.
    if (pending.size === 0 && this.#pending.get(clientId) === pending) this.#pending.delete(clientId);
    return undefined;
  }

  /**
   * Delivers while the client listens: up to {@link WINDOW} messages unacknowledged, the
   * next one sent as each PUBACK comes back (so data keeps flowing and no round waits on a
   * delayed TCP ACK), each queue acknowledged up to the contiguous prefix the client acked.
   * A message appended to a more urgent queue is sent before the rest of a less urgent one.
   */
  async #drain(clientId: string): Promise<void> {
    await this.#load();
    const [deviceId, moduleId] = clientId.split("/");
    const target = this.#find(clientId);
    if (!target?.listensForDeliveries()) return;
    this.#again.delete(clientId);
    const topicOf = (m: StoredMessage): string => {
      // The input's name goes in the topic; a child hub's forwarder id is internal to the hubs.
      const { [INPUT]: input, [FORWARD_ID]: _fid, ...rest } = m.properties;
      const bag = encodePropertyBag(rest);
      return moduleId === undefined
        ? TOPICS.c2d.format({ deviceId: deviceId as string, bag })
        : TOPICS.moduleInput.format({
            deviceId: deviceId as string,
            moduleId,
            input: input ?? "input1",
            bag,
          });
    };
    // Kept per connection: a drain that ends with deliveries in flight (the client
    // unsubscribed, a read failed) leaves the next drain on that connection its place, so
    // it sends nothing twice there.
    const cursors = this.#cursors.get(target) ?? new Map<string, Cursor>();
    this.#cursors.set(target, cursors);
    const cursorOf = (queue: string): Cursor => {
      let c = cursors.get(queue);
      if (!c) {
        c = new Cursor(
          (offset) => this.#store.ack(queue, offset),
          // Not acknowledged: delivered again later (at least once).
          (err) => this.#log.log("warn", "delivery-ack-failed", { clientId, reason: (err as Error).message }),
        );
        cursors.set(queue, c);
      }
      return c;
    };
    let inflight = 0;
    let failed = false;
    let buffer: StoredMessage[] = [];
    let current: { cursor: Cursor; rank: number; queue: string } | undefined;
    const settled = () => {
      inflight--;
      this.#wakers.get(clientId)?.();
    };
    try {
      for (;;) {
        if (failed || this.#find(clientId) !== target || !target.listensForDeliveries()) break;
        const urgent = this.#urgent.get(clientId);
        this.#urgent.delete(clientId);
        if (current && buffer[0] && urgent !== undefined && urgent < current.rank) {
          // Unsent messages of a less urgent queue wait: they are read again after.
          current.cursor.from = buffer[0].offset;
          buffer = [];
        }
        if (buffer.length === 0) {
          const next = await this.#next(clientId, cursorOf);
          if (next) {
            buffer = next.messages;
            current = next;
          } else if (inflight === 0) break;
        }
        while (inflight < WINDOW && buffer.length > 0 && current) {
          const m = buffer.shift() as StoredMessage;
          const cursor = current.cursor;
          inflight++;
          cursor.sent(m.offset);
          const sentBefore = this.#sentUpTo.get(current.queue) ?? -1;
          if (m.offset > sentBefore) this.#sentUpTo.set(current.queue, m.offset);
          target.deliverQos1(topicOf(m), m.body, m.offset <= sentBefore).then(
            () => {
              cursor.acked(m.offset);
              this.onCompleted?.(clientId, m);
              settled();
            },
            () => {
              // The connection went away: what it did not acknowledge goes again on the next one.
              failed = true;
              settled();
            },
          );
        }
        // Stored while this drain was reading (no waker was set): read again before waiting, or
        // a client holding its PUBACKs until it has everything would wait for it forever.
        if (buffer.length === 0 && inflight > 0 && this.#again.delete(clientId)) continue;
        if (inflight >= WINDOW || (buffer.length === 0 && inflight > 0)) {
          await new Promise<void>((resolve) => {
            this.#wakers.set(clientId, () => {
              this.#wakers.delete(clientId);
              resolve();
            });
          });
        }
      }
    } finally {
      this.#wakers.delete(clientId);
      // Read and not sent: read again.
      if (current && buffer[0]) current.cursor.from = buffer[0].offset;
      // A queue read to its end may still have messages the client did not acknowledge (the
      // connection went away, a read failed): it is read again, from its acknowledged
      // prefix, next time.
      for (const [queue, c] of cursors)
        if (c.outstanding) this.#mark(clientId, queue, ownerOf(queue)?.rank ?? PRIORITIES);
    }
    for (const c of cursors.values()) await c.acks.idle();
  }
}
