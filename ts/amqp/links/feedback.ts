/**
 * C2D feedback as IoT Hub gives it: when a device completes or rejects a C2D message, or
 * abandons it past the max delivery count, or the message expires or is purged before the
 * device completes it (./feedback-pending.ts), and its sender asked for that feedback
 * (`iothub-ack` positive, negative or full), a record
 * `{originalMessageId, deviceId, description, statusCode, enqueuedTimeUtc, deviceGenerationId}`
 * is kept in the durable queue `$feedback` (one hour, as IoT Hub's feedback TTL; at most
 * {@link MAX_RECORDS} waiting, past which new ones are dropped and logged) and sent in
 * batches to a service client's receiver on `/messages/serviceBound/feedback`: one message,
 * content type `application/vnd.microsoft.iothub.feedback.json`, the body a JSON array of
 * records (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d, "Message
 * feedback"; azure-iothub `amqp.js` `getFeedbackReceiver`). One batch is out at a time; the
 * client's `accepted` (SDK `complete`) or `rejected` removes it, `released` (`abandon`) or a
 * link that ends first sends it again.
 */
import { randomUUID } from "node:crypto";
// Types only: the queue lives on every root; rhea loads with the first AMQP connection.
import type { Delivery, Message, Sender } from "rhea";
import type { Registry } from "../../auth/registry.js";
import type { SettledOutcome } from "../../delivery/device-delivery.js";
import type { Logger } from "../../log.js";
import { ACK_PROPERTY, wantsFeedback } from "../../service/service-side.js";
import type { MessageStore, StoredMessage } from "../../store/index.js";
import { PendingFeedback, type Unsettled } from "./feedback-pending.js";

/** A service client's feedback receiver (our sender): its dispositions, and its end. */
export interface FeedbackLink {
  settled(delivery: Delivery, outcome: "accepted" | "rejected" | "released"): void;
  /** The link or its connection ended: a batch out on it goes to the next one. */
  close(): void;
}

/** The store queue of feedback records waiting for a service client. */
export const FEEDBACK_QUEUE = "$feedback";
/** The content type of a feedback batch. */
export const FEEDBACK_CONTENT_TYPE = "application/vnd.microsoft.iothub.feedback.json";
/** How long a record waits for a service client (IoT Hub's default feedback TTL). */
const TTL_SECS = 3600;
/** Records waiting at most; past this new ones are dropped. */
export const MAX_RECORDS = 10_000;
/** Records in one batch message at most. */
const BATCH = 64;

/** One feedback record, as IoT Hub writes it. */
export interface FeedbackRecord {
  originalMessageId: string;
  deviceId: string;
  description: string;
  statusCode: "Success" | "Rejected" | "DeliveryCountExceeded" | Unsettled;
  enqueuedTimeUtc: string;
  deviceGenerationId: string;
}

/** IoT Hub's status codes; the description is the status as text (the feedback table of the C2D guide). */
const OUTCOMES = {
  completed: { statusCode: "Success", description: "Success" },
  rejected: { statusCode: "Rejected", description: "Rejected" },
  "dead-lettered": { statusCode: "DeliveryCountExceeded", description: "DeliveryCountExceeded" },
  Expired: { statusCode: "Expired", description: "Expired" },
  Purged: { statusCode: "Purged", description: "Purged" },
} as const;

interface InFlight {
  sender: Sender;
  delivery: Delivery;
  last: number;
}

/** The hub's feedback queue and the service links that read it. */
export class FeedbackQueue {
  readonly #store: MessageStore;
  readonly #registry: Registry;
  readonly #log: Logger;
  readonly #senders = new Set<Sender>();
  #inFlight: InFlight | undefined;
  #reading = false;
  #appending = 0;
  readonly #maxRecords: number;
  /** Dropped records since the start (the queue was full). */
  dropped = 0;
  /** Records in the store when the appends under way began (see {@link FeedbackQueue.settled}). */
  #base = 0;

  /** C2D messages that owe a record if they expire or are purged before a device settles them. */
  readonly #pending: PendingFeedback;

  /** @param maxRecords records kept waiting at most (default {@link MAX_RECORDS}). */
  constructor(store: MessageStore, registry: Registry, log: Logger, maxRecords = MAX_RECORDS) {
    this.#store = store;
    this.#registry = registry;
    this.#log = log;
    this.#maxRecords = maxRecords;
    this.#pending = new PendingFeedback(store, log, (p, status) =>
      this.#record(p.deviceId, p.messageId, status),
    );
  }

  /** Reads the messages watched for expiry before a restart (those expired meanwhile get their record). */
  start(): Promise<void> {
    return this.#pending.load();
  }

  /** Stops watching for expiries (the hub is closing; the list stays in the store). */
  close(): void {
    this.#pending.close();
  }

  /**
   * A service's C2D message was stored at `offset` of `queue` (`DeviceDelivery.onC2dQueued`):
   * watched for its expiry when its sender asked for negative feedback; resolves once the
   * watch is durable (the send is acknowledged after it).
   */
  queued(
    deviceId: string,
    queue: string,
    offset: number,
    properties: Record<string, string>,
    ttlSecs: number,
  ): Promise<void> | undefined {
    const ack = properties[ACK_PROPERTY];
    if (ack !== "negative" && ack !== "full") return undefined;
    return this.#pending.watch({
      deviceId,
      queue,
      offset,
      messageId: properties["$.mid"] ?? "",
      // The store counts the TTL from its append, a moment before this: never before the store.
      expiresAt: Date.now() + ttlSecs * 1000,
    });
  }

  /** The device's C2D queues were purged (records `Purged`), or the device deleted (none). */
  removed(deviceId: string, why: "purged" | "deleted"): void {
    this.#pending.removed(deviceId, why);
  }

  /**
   * A device settled C2D message `m` of `queue` (`DeviceDelivery.onSettled`): its record, if
   * its sender asked.
   */
  settled(clientId: string, m: StoredMessage, outcome: SettledOutcome, queue?: string): void {
    if (queue !== undefined) this.#pending.settled(queue, m.offset);
    // C2D queues are a device's own (a module's are its inputs, which have no feedback).
    if (clientId.includes("/") || !wantsFeedback(m.properties[ACK_PROPERTY], outcome)) return;
    this.#record(clientId, m.properties["$.mid"] ?? "", outcome);
  }

  /** Writes the record of `messageId` for `clientId`, unless the queue is full. */
  #record(clientId: string, messageId: string, outcome: keyof typeof OUTCOMES): void {
    let waiting: number;
    try {
      // Stored, and on their way to the store. While appends are under way the store's count
      // may already hold some of them (committed, their callback not run yet): the count is
      // taken when none is, and the appends since are added to it, so none counts twice.
      if (this.#appending === 0) this.#base = this.#store.queueNow(FEEDBACK_QUEUE)?.count ?? 0;
      waiting = this.#base + this.#appending;
    } catch (err) {
      // The store closed (the hub is stopping): the record goes with it.
      this.#log.log("warn", "feedback-not-stored", { deviceId: clientId, reason: (err as Error).message });
      return;
    }
    if (waiting >= this.#maxRecords) {
      this.dropped++;
      this.#log.log("warn", "feedback-dropped", { deviceId: clientId, waiting });
      return;
    }
    const record: FeedbackRecord = {
      originalMessageId: messageId,
      deviceId: clientId,
      ...OUTCOMES[outcome],
      enqueuedTimeUtc: new Date().toISOString(),
      deviceGenerationId: this.#registry.getDevice(clientId)?.generationId ?? "",
    };
    this.#appending++;
    this.#store
      .append(FEEDBACK_QUEUE, [{ body: Buffer.from(JSON.stringify(record)), ttlSecs: TTL_SECS }])
      .then(
        () => {
          // In the store now: part of the base until the count is taken again.
          this.#appending--;
          this.#base++;
          this.#pump();
        },
        (err: unknown) => {
          this.#appending--;
          this.#log.log("warn", "feedback-not-stored", {
            deviceId: clientId,
            reason: (err as Error).message,
          });
        },
      );
  }

  /** A service client's receiver on the feedback address (our sender). */
  attach(sender: Sender): FeedbackLink {
    this.#senders.add(sender);
    // Credit arrives after the attach: the batch goes when it does.
    sender.on("sendable", () => this.#pump());
    this.#pump();
    return {
      settled: (delivery, outcome) => this.#settled(delivery, outcome),
      close: () => {
        this.#senders.delete(sender);
        if (this.#inFlight?.sender === sender) {
          this.#inFlight = undefined;
          this.#pump();
        }
      },
    };
  }

  #settled(delivery: Delivery, outcome: "accepted" | "rejected" | "released"): void {
    const out = this.#inFlight;
    if (!out || out.delivery !== delivery) return;
    if (outcome === "released") {
      this.#inFlight = undefined;
      this.#pump();
      return;
    }
    this.#store.ack(FEEDBACK_QUEUE, out.last).then(
      () => {
        if (this.#inFlight === out) this.#inFlight = undefined;
        this.#pump();
      },
      (err: unknown) => {
        // Sent again (at least once).
        if (this.#inFlight === out) this.#inFlight = undefined;
        this.#log.log("warn", "feedback-ack-failed", { reason: (err as Error).message });
      },
    );
  }

  /** Sends the next batch when none is out and a link has credit. */
  #pump(): void {
    if (this.#inFlight || this.#reading) return;
    if (![...this.#senders].some((s) => s.sendable())) return;
    this.#reading = true;
    this.#store.read(FEEDBACK_QUEUE, { limit: BATCH }).then(
      (records) => {
        this.#reading = false;
        const sender = [...this.#senders].find((s) => s.sendable());
        if (records.length === 0 || !sender || this.#inFlight) return;
        const delivery = sender.send(batchMessage(sender, records));
        this.#inFlight = { sender, delivery, last: (records.at(-1) as StoredMessage).offset };
      },
      (err: unknown) => {
        this.#reading = false;
        this.#log.log("warn", "feedback-read-failed", { reason: (err as Error).message });
      },
    );
  }
}

/** One feedback message: the records as a JSON array. */
function batchMessage(sender: Sender, records: StoredMessage[]): Message {
  const body = Buffer.from(`[${records.map((r) => r.body.toString("utf8")).join(",")}]`);
  return {
    message_id: randomUUID(),
    content_type: FEEDBACK_CONTENT_TYPE,
    body: sender.connection.container.message.data_section(body),
  };
}
