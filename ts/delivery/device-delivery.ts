/**
 * Durable delivery to devices and modules: cloud-to-device messages and device endpoints
 * (queues `$c2d/{device}[/pN]`, topic `devices/{d}/messages/devicebound/{bag}`) and module
 * inputs (queues `$inputs/{device}/{module}[/pN]`, topic
 * `devices/{d}/modules/{m}/inputs/{input}/{bag}`); see ../vocabulary.ts for the names and order.
 * Messages are stored first (with a TTL), delivered in order at QoS 1 while the client
 * listens, a window of them at a time, and removed on their PUBACKs; one whose PUBACK never
 * came is delivered again on the next connection (at least once). Each client connection
 * has its own queue consumer (../queue/consumer.ts, docs/queue-consumer.md): one that does
 * not acknowledge holds back only itself. This file is its adapter: the topic a message
 * goes on, and a PUBACK as what completes it.
 */

import { record } from "../json.js";
import { KeyedSerial } from "../keyed-serial.js";
import type { Logger } from "../log.js";
import type { Clock } from "../queue/clock.js";
import { QueueConsumer, type Source } from "../queue/consumer.js";
import type { MessageStore, StoredMessage } from "../store/index.js";
import { deliveryQueue, FORWARD_ID, INPUT_PROPERTY, ownerOf } from "../vocabulary.js";

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

/** A stored message on its way to a device (C2D) or a module input, as a protocol head sends it. */
export interface Outgoing {
  deviceId: string;
  /** Set for a module input. */
  moduleId?: string;
  /** The module input's name. */
  input?: string;
  /** Application properties and `$.` system properties (the hubs' internal ones removed). */
  properties: Record<string, string>;
  body: Buffer;
}

/**
 * How the client settled a delivery: `completed` (MQTT PUBACK, AMQP accepted) and `rejected`
 * (AMQP rejected) remove it; `abandoned` (AMQP released or modified) sends it again, in order.
 */
export type Settled = "completed" | "rejected" | "abandoned";

/** What the delivery needs from a connection. */
export interface DeliveryTarget {
  /** True once the client subscribed to its C2D messages (device) or its inputs (module). */
  listensForDeliveries(): boolean;
  /**
   * Sends `m` at least once (`dup`: sent before, on an earlier connection); resolves when
   * the client settles it, rejects if the connection closes first.
   */
  deliverMessage(m: Outgoing, dup: boolean): Promise<Settled>;
}

const SYSTEM: Record<string, keyof DeviceMessage> = {
  "$.mid": "messageId",
  "$.cid": "correlationId",
  "$.ct": "contentType",
  "$.ce": "contentEncoding",
};
/** Deliveries read past a client's checkpoint at most, and the bytes of those not acknowledged. */
const WINDOW = 64;
const WINDOW_BYTES = 1024 * 1024;
/**
 * Deliveries of one C2D message a device may abandon before it is removed (dead-lettered),
 * IoT Hub's default `maxDeliveryCount`
 * (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d).
 */
export const MAX_DELIVERY_COUNT = 10;
/** A C2D message's TTL when its sender gives none (IoT Hub's default). */
const C2D_TTL_SECS = 3600;
/** Messages whose abandons are counted at once; past this the oldest count is forgotten. */
const MAX_TRACKED_ABANDONS = 10_000;
/** How a message left its queue: settled by the client, or dead-lettered after its last abandon. */
export type SettledOutcome = "completed" | "rejected" | "dead-lettered";
/** Stored with a module-input message: the input's name (not sent in the bag). */
const INPUT = INPUT_PROPERTY;

/** One client connection's drain: its consumer, and what it took while the client was not listening. */
interface Drain {
  readonly clientId: string;
  readonly target: DeliveryTarget;
  readonly consumer: QueueConsumer;
  /** `devices/{d}` parts of the topics. */
  readonly deviceId: string;
  readonly moduleId: string | undefined;
  /** Handed over while the client did not listen: sent first when it listens again. */
  held: { m: StoredMessage; source: Source; epoch: number }[];
}

/** Queues and delivers messages to devices and module inputs. */
export class DeviceDelivery {
  readonly #store: MessageStore;
  readonly #find: (clientId: string) => DeliveryTarget | undefined;
  readonly #log: Logger;
  readonly #clock: Clock | undefined;
  /** Per client with a connection that listens (or did, with deliveries out): its drain. */
  readonly #drains = new Map<string, Drain>();
  /**
   * Per client, its queues that may hold messages not read yet (from before this process, or
   * stored while no drain ran): a new drain reads these. Forgotten when its drain is drained.
   */
  readonly #queued = new Map<string, Set<string>>();
  /** C2D sends, one at a time per device. */
  readonly #c2dTurns = new KeyedSerial();
  /** Per client whose last drain ended: resolves when that drain's store acknowledgements are written. */
  readonly #settling = new Map<string, Promise<void>>();
  /**
   * Per queue, the highest offset sent to any connection of its client since the start: a
   * message at or below it goes again with DUP set (MQTT-3.3.1-1), which an edge relaying it
   * uses to match a resend without a message id. Removed with the client's queues.
   */
  readonly #sentUpTo = new Map<string, number>();
  /** The queues left from before a restart, listed from the store once. */
  #loaded: Promise<void> | undefined;
  #isLoaded = false;
  /**
   * Told of each message a client completed (PUBACKed), before its queue is acknowledged:
   * the C2D relay then completes the parent's copy (`c2d-relay.ts`).
   */
  onCompleted: ((clientId: string, m: StoredMessage) => void) | undefined;
  /**
   * Told of each message a client completed or rejected, and of each C2D message removed
   * after {@link MAX_DELIVERY_COUNT} abandons, with the queue it was in (the root's C2D
   * feedback, ../amqp/links/feedback.ts).
   */
  onSettled:
    | ((clientId: string, m: StoredMessage, outcome: SettledOutcome, queue: string) => void)
    | undefined;
  /**
   * Told of each service C2D message stored ({@link sendC2D}), before it can be delivered;
   * the send resolves once what it returns does.
   */
  onC2dQueued:
    | ((
        deviceId: string,
        queue: string,
        offset: number,
        properties: Record<string, string>,
        ttlSecs: number,
      ) => Promise<void> | undefined)
    | undefined;
  /** Told when a device's C2D queues were purged ({@link purgeC2D}) or the device forgotten ({@link purge}). */
  onC2dRemoved: ((deviceId: string, why: "purged" | "deleted") => void) | undefined;
  /** Abandons of C2D messages not settled yet, by `queue:offset` (at most {@link MAX_TRACKED_ABANDONS}). */
  readonly #abandons = new Map<string, number>();

  constructor(
    store: MessageStore,
    find: (clientId: string) => DeliveryTarget | undefined,
    log: Logger,
    clock?: Clock,
  ) {
    this.#store = store;
    this.#find = find;
    this.#log = log;
    this.#clock = clock;
  }

  #properties(m: DeviceMessage): Record<string, string> {
    const properties: Record<string, string> = { ...m.properties };
    for (const [key, field] of Object.entries(SYSTEM)) {
      const v = m[field];
      if (typeof v === "string") properties[key] = v;
    }
    return properties;
  }

  /**
   * Stores one message in the base queue of `clientId` and delivers it; resolves with its
   * offset. `stored` is told of it first, before it can be delivered.
   */
  async #queue(
    clientId: string,
    m: DeviceMessage,
    properties: Record<string, string>,
    ttl: number,
    stored?: (queue: string, offset: number, ttlSecs: number) => void,
  ): Promise<number> {
    const queue = deliveryQueue(clientId);
    const ttlSecs = m.ttlSecs ?? ttl;
    const [offset] = (await this.#store.append(queue, [{ body: m.body, properties, ttlSecs }])) as number[];
    stored?.(queue, offset as number, ttlSecs);
    this.stored(queue);
    return offset as number;
  }

  /** Forgets everything queued for `clientId` (its identity was deleted). */
  async purge(clientId: string): Promise<void> {
    await this.#purge(clientId);
    this.onC2dRemoved?.(clientId, "deleted");
  }

  /**
   * Removes every message queued for device `deviceId` (IoT Hub's purge of its C2D queue,
   * `DELETE /devices/{id}/commands`); resolves with how many there were.
   */
  async purgeC2D(deviceId: string): Promise<number> {
    const purged = await this.#purge(deviceId);
    this.onC2dRemoved?.(deviceId, "purged");
    return purged;
  }

  /** Acknowledges every queue of `clientId`; resolves with the live messages they held. */
  async #purge(clientId: string): Promise<number> {
    const drain = this.#drains.get(clientId);
    if (drain) this.#retire(drain);
    let purged = 0;
    for (const q of (await this.#store.stats()).queues) {
      if (ownerOf(q.name)?.clientId !== clientId) continue;
      purged += q.count;
      if (q.tail > 0 && q.ackedUpTo < q.tail - 1) await this.#store.ack(q.name, q.tail - 1);
      this.#sentUpTo.delete(q.name);
    }
    this.#queued.delete(clientId);
    return purged;
  }

  /**
   * Queues a cloud-to-device message for `deviceId`, then delivers it if the device listens.
   * `admit`, when given, is told first how many of the device's messages are queued (stored
   * and not yet settled or expired) and may throw to refuse this one: sends to one device
   * are taken one at a time, so that count is exact however many come at once.
   */
  sendC2D(deviceId: string, m: DeviceMessage, admit?: (queued: number) => void): Promise<void> {
    return this.#c2dTurns.run(deviceId, async () => {
      admit?.(this.#store.queueNow(deliveryQueue(deviceId))?.count ?? 0);
      const properties = this.#properties(m);
      properties["$.to"] = `/devices/${deviceId}/messages/devicebound`;
      let told: Promise<void> | undefined;
      await this.#queue(deviceId, m, properties, C2D_TTL_SECS, (q, offset, ttlSecs) => {
        told = this.onC2dQueued?.(deviceId, q, offset, properties, ttlSecs);
      });
      await told;
    });
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
    this.#mark(owner.clientId, queue);
    const drain = this.#drains.get(owner.clientId);
    if (drain && drain.target === this.#find(owner.clientId) && drain.held.length === 0)
      drain.consumer.stored(queue);
    else this.pump(owner.clientId);
  }

  #mark(clientId: string, queue: string): void {
    let queues = this.#queued.get(clientId);
    if (!queues) {
      queues = new Set();
      this.#queued.set(clientId, queues);
    }
    queues.add(queue);
  }

  /** Lists the delivery queues holding messages from before this process, once. */
  #load(): Promise<void> {
    this.#loaded ??= this.#store.stats().then((s) => {
      for (const q of s.queues) {
        const owner = q.count > 0 ? ownerOf(q.name) : undefined;
        if (owner) this.#mark(owner.clientId, q.name);
      }
      this.#isLoaded = true;
    });
    return this.#loaded;
  }

  /**
   * Delivers what is queued for `clientId`, in order, while it listens: called when it
   * subscribes or connects, and when something is stored for it.
   */
  pump(clientId: string): void {
    if (this.#isLoaded) {
      this.#pumpNow(clientId);
      return;
    }
    this.#load().then(
      () => this.#pumpNow(clientId),
      (err: unknown) =>
        this.#log.log("warn", "delivery-stopped", { clientId, reason: (err as Error).message }),
    );
  }

  #pumpNow(clientId: string): void {
    const target = this.#find(clientId);
    let drain = this.#drains.get(clientId);
    // Another connection (or none): the old one's drain ends; what it did not get acknowledged
    // is read again by the next.
    if (drain && drain.target !== target) {
      this.#retire(drain);
      drain = undefined;
    }
    if (!target) return;
    if (!target.listensForDeliveries()) {
      // Kept as it is (the same connection may subscribe again and resends nothing).
      drain?.consumer.pause();
      return;
    }
    if (drain) {
      const held = drain.held;
      drain.held = [];
      for (const h of held) this.#send(drain, h.m, h.source, h.epoch);
      drain.consumer.resume();
      return;
    }
    const queues = this.#queued.get(clientId);
    if (!queues || queues.size === 0) return;
    drain = this.#open(clientId, target);
    for (const q of queues) drain.consumer.add(q);
    const settling = this.#settling.get(clientId);
    if (!settling) {
      drain.consumer.resume();
      return;
    }
    // The last drain's acknowledgements first, so this one reads nothing it completed.
    const opened = drain;
    void settling.then(() => {
      if (this.#settling.get(clientId) === settling) this.#settling.delete(clientId);
      if (this.#drains.get(clientId) === opened) this.#pumpNow(clientId);
    });
  }

  #open(clientId: string, target: DeliveryTarget): Drain {
    const [deviceId, moduleId] = clientId.split("/") as [string, string | undefined];
    // Set below, before the consumer can hand anything over.
    let drain: Drain;
    const consumer = new QueueConsumer(
      this.#store,
      { deliver: (m, source, epoch) => this.#deliver(drain, m, source, epoch) },
      {
        window: WINDOW,
        windowBytes: WINDOW_BYTES,
        readBatch: WINDOW,
        // The next read starts at the first PUBACK. Waiting for 16 free
        // places let a module's input queue fall behind a steady sender (module to module at
        // 64 in flight: p50 from ~5 ms to ~1 s in benches/modules.bench.mjs); reads made
        // while one is under way are merged, so they still grow with the flow.
        ...(this.#clock ? { clock: this.#clock } : {}),
        onDrained: () => {
          // Everything read, completed and acknowledged: the next store opens a new drain.
          if (this.#drains.get(clientId) !== drain) return;
          this.#drains.delete(clientId);
          this.#queued.delete(clientId);
          drain.consumer.close();
        },
        onError: (what, queue, err) =>
          // Read again (a read), or delivered again later (an acknowledgement: at least once).
          this.#log.log("warn", `delivery-${what}-failed`, {
            clientId,
            queue,
            reason: (err as Error).message,
          }),
      },
    );
    drain = { clientId, target, deviceId, moduleId, held: [], consumer };
    this.#drains.set(clientId, drain);
    return drain;
  }

  /** Ends a drain: nothing more is read for it; its acknowledgements asked are still written. */
  #retire(drain: Drain): void {
    drain.consumer.close();
    if (this.#drains.get(drain.clientId) === drain) this.#drains.delete(drain.clientId);
    drain.held = [];
    this.#settling.set(drain.clientId, drain.consumer.settled());
  }

  #deliver(drain: Drain, m: StoredMessage, source: Source, epoch: number): void {
    if (drain.held.length > 0 || !drain.target.listensForDeliveries()) {
      // The client stopped listening: what the consumer hands over now waits for it.
      drain.consumer.pause();
      drain.held.push({ m, source, epoch });
      return;
    }
    this.#send(drain, m, source, epoch);
  }

  /** Publishes at QoS 1; the PUBACK completes the message, a closed connection ends the drain. */
  #send(drain: Drain, m: StoredMessage, source: Source, epoch: number): void {
    const queue = source.queue;
    const sentBefore = this.#sentUpTo.get(queue) ?? -1;
    if (m.offset > sentBefore) this.#sentUpTo.set(queue, m.offset);
    drain.target.deliverMessage(this.#outgoing(drain, m), m.offset <= sentBefore).then(
      (settled) => {
        const key = `${queue}:${m.offset}`;
        if (settled === "abandoned") {
          if (!this.#deadLetter(drain, key)) {
            // Sent again in order: this drain ends, the next reads from its checkpoint.
            if (drain.consumer.state !== "closed") this.#retire(drain);
            this.pump(drain.clientId);
            return;
          }
          this.onSettled?.(drain.clientId, m, "dead-lettered", queue);
          drain.consumer.done(source, m, epoch);
          return;
        }
        this.#abandons.delete(key);
        this.onCompleted?.(drain.clientId, m);
        this.onSettled?.(drain.clientId, m, settled, queue);
        drain.consumer.done(source, m, epoch);
      },
      // The connection went away: what it did not acknowledge goes again on the next one.
      () => {
        if (drain.consumer.state !== "closed") this.#retire(drain);
      },
    );
  }

  /**
   * Counts an abandon of the C2D message at `key`; true when it was the last IoT Hub allows
   * (the message is then removed). Module inputs are sent again however often.
   */
  #deadLetter(drain: Drain, key: string): boolean {
    if (drain.moduleId !== undefined) return false;
    const n = (this.#abandons.get(key) ?? 0) + 1;
    this.#abandons.delete(key);
    if (n >= MAX_DELIVERY_COUNT) return true;
    this.#abandons.set(key, n);
    if (this.#abandons.size > MAX_TRACKED_ABANDONS)
      this.#abandons.delete(this.#abandons.keys().next().value as string);
    return false;
  }

  #outgoing(drain: Drain, m: StoredMessage): Outgoing {
    // The input's name is the head's to place; a child hub's forwarder id is internal to the hubs.
    const { [INPUT]: input, [FORWARD_ID]: _fid, ...rest } = m.properties;
    const properties = record<string>();
    for (const k of Object.keys(rest)) properties[k] = rest[k] as string;
    const out: Outgoing = { deviceId: drain.deviceId, properties, body: m.body };
    if (drain.moduleId !== undefined) {
      out.moduleId = drain.moduleId;
      out.input = input ?? "input1";
    }
    return out;
  }
}
