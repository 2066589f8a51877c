/**
 * Cloud-to-device messages from the parent to this hub's child devices. While a child
 * listens here (it subscribed `devices/{d}/messages/devicebound/#`), its link to the parent
 * subscribes the same filter at QoS 1 (CP `CloudProxy.cs#StartListening`, `#StopListening`;
 * HC `SubscriptionProcessor.cs#ProcessSubscription`; SDK
 * `MqttTransportHandler.cs#SubscribeCloudToDeviceMessagesAsync`). Each message the parent
 * sends is checked, stored durably in the child's C2D queue (`$c2d/{d}`) and delivered from
 * there; the parent's copy is completed (PUBACK, the MQTT lock token being its packet id)
 * only once the child completed its local one, in arrival order (SDK
 * `MqttTransportHandler.cs#CompleteAsync`, `MqttIotHubAdapter.cs#Acknowledge`; CP
 * `CloudProxy.cs#SendFeedbackMessageAsync`). Modules get no C2D (CP
 * `ModuleClientWrapper.cs#ReceiveAsync` throws), nor does this hub's own identity.
 *
 * The parent sends again what it has no PUBACK for when the link returns (clean session
 * false). A copy already stored is not stored twice: each relayed message is stored with a
 * relay key (under the router's `FORWARD_ID` property, which delivery never sends on), and
 * a resend with a key stored and not yet completed waits for that copy's completion, one
 * with a key completed recently is completed at once. The key is the parent's `$.mid`; a
 * message without one is keyed by a digest of its properties and body, and only a resend
 * the parent marks DUP is matched by digest (two distinct messages may be alike; a resend
 * without DUP is then stored again: at least once). Keys pending are read back from the
 * queue when the hub restarts; keys completed are kept in memory (a crash between the
 * child's PUBACK and ours leaves one duplicate for the child, as at least once allows).
 *
 * What it holds per device (keys pending, whether its queue was read) follows the registry:
 * a device removed from it (deleted, or gone from the parent's scope) is forgotten, so the
 * maps are bounded by the registry's devices.
 *
 * A message that fails the checks (oversized, a property name IoT Hub would not send, an
 * unreadable expiry) is logged and completed: over MQTT nothing else refuses it (the SDK's
 * `#RejectAsync` sends nothing), and an uncompleted one would hold back every later PUBACK.
 */
import { createHash } from "node:crypto";
import type { Registry } from "../auth/registry.js";
import type { DeviceDelivery } from "../delivery/device-delivery.js";
import { record } from "../json.js";
import type { Logger } from "../log.js";
import { decodePropertyBag } from "../protocol/topics.js";
import { RecentIds } from "../routing/recent-ids.js";
import type { MessageStore, StoredMessage } from "../store/index.js";
import { deliveryQueue, FORWARD_ID } from "../vocabulary.js";
import type { Link } from "./link.js";
import type { Inbound } from "./mqtt-client.js";
import type { TwinLinks } from "./twin-sync.js";

/** The filter a device's C2D messages come on. */
export function c2dFilter(deviceId: string): string {
  return `devices/${deviceId}/messages/devicebound/#`;
}

const C2D_TOPIC = /^devices\/([^/]+)\/messages\/devicebound\/(.*)$/s;

/** True for a topic the parent sends C2D messages on: their PUBACK waits for the child. */
export function isC2dTopic(topic: string): boolean {
  return C2D_TOPIC.test(topic);
}

/** IoT Hub's largest C2D message (body). */
export const MAX_C2D_BODY = 64 * 1024;
/** Largest property bag taken from the parent (url-encoded), and most properties in it. */
export const MAX_C2D_BAG = 16 * 1024;
export const MAX_C2D_PROPERTIES = 128;
/** TTL of a message without `$.exp`: IoT Hub's default C2D TTL. */
const DEFAULT_TTL_SECS = 3600;
/** System properties kept from the parent's bag (SDK `MqttIotHubAdapter.cs#PopulateMessagePropertiesFromPacket`). */
const SYSTEM_KEYS = new Set(["$.mid", "$.cid", "$.ct", "$.ce", "$.to", "$.exp", "$.uid"]);
/** Application property names IoT Hub takes: alphanumerics and ``!#$%&'*+-.^_`|~``, up to 128. */
const NAME = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]{1,128}$/;
/** Relay keys read back from one device's queue after a restart, at most. */
const SEEDED = 4096;
/** The prefix of a relay key in the stored `FORWARD_ID` property. */
const KEY_PREFIX = "c2d:";

/** A message the checks refused, and why. */
class Refused extends Error {}

/** Stored and not yet completed by the child: the parent's copies waiting for that. */
interface Pending {
  completes: Array<() => void>;
  expiry: NodeJS.Timeout | undefined;
}

/** Relays the parent's C2D messages to this hub's child devices, durably. */
export class C2dRelay {
  readonly #links: TwinLinks;
  readonly #delivery: DeviceDelivery;
  readonly #store: MessageStore;
  readonly #isChild: (deviceId: string) => boolean;
  readonly #log: Logger;
  readonly #listening = new Map<
    string,
    { link: Link; onDeferred: (topic: string, payload: Buffer, inbound: Inbound) => void }
  >();
  /**
   * Per device, relay keys stored and not completed, one entry per stored copy (alike
   * messages without `$.mid` share a key). Kept while the device does not listen:
   * the child completes its copy when it is back, and the parent's copy with it. Bounded by
   * the parent's unacknowledged messages (`MqttClient`'s cap) and {@link SEEDED} per device.
   */
  readonly #pending = new Map<string, Map<string, Pending[]>>();
  /** Relay keys the child completed, recently (bounded per device and in devices). */
  readonly #completed = new RecentIds();
  /** Devices whose queue was read for relay keys since the start (once each: later keys are tracked live). */
  readonly #seeded = new Set<string>();
  readonly #registry: Registry;
  /** A device gone from the registry is forgotten (a disabled one or new keys are not). */
  readonly #onRevoked = (deviceId: string, moduleId: string | undefined): void => {
    if (moduleId === undefined && this.#registry.getDevice(deviceId) === undefined) this.forget(deviceId);
  };
  #closed = false;

  constructor(
    links: TwinLinks,
    delivery: DeviceDelivery,
    store: MessageStore,
    registry: Registry,
    isChild: (deviceId: string) => boolean,
    log: Logger,
  ) {
    this.#links = links;
    this.#delivery = delivery;
    this.#store = store;
    this.#registry = registry;
    this.#isChild = isChild;
    this.#log = log;
    registry.on("revoked", this.#onRevoked);
  }

  /** Devices it holds anything for (listening, keys pending, queue read): for tests and status. */
  get devicesHeld(): number {
    return new Set([...this.#listening.keys(), ...this.#pending.keys(), ...this.#seeded]).size;
  }

  /**
   * Device `deviceId` listens for C2D here: its link listens upstream, once what is stored
   * from before is known (so a resend of it is not stored twice).
   */
  listen(deviceId: string): void {
    if (this.#closed || this.#listening.has(deviceId) || deviceId.includes("/") || !this.#isChild(deviceId))
      return;
    const link = this.#links.linkFor(deviceId);
    const onDeferred = (topic: string, payload: Buffer, inbound: Inbound) =>
      this.#arrived(deviceId, topic, payload, inbound).catch((err: unknown) => {
        // Not stored (the store is full or failing): not completed, so the parent keeps it;
        // a fresh connection gets it again (the next PUBACKs wait behind it).
        this.#log.log("warn", "c2d-relay-store-failed", { deviceId, reason: (err as Error).message });
        link.reconnect("a C2D message could not be stored");
      });
    this.#listening.set(deviceId, { link, onDeferred });
    void this.#seed(deviceId).then(
      () => {
        if (this.#listening.get(deviceId)?.onDeferred !== onDeferred) return;
        // Taken from now on; one that came before (a kept session) makes the link reconnect.
        link.on("deferred", onDeferred);
        link.listenTo(c2dFilter(deviceId), undefined, 1);
        link.start();
      },
      (err: unknown) =>
        this.#log.log("warn", "c2d-relay-seed-failed", { deviceId, reason: (err as Error).message }),
    );
  }

  /** It stopped listening: so does its link (the parent keeps what it has not sent). */
  unlisten(deviceId: string): void {
    const l = this.#listening.get(deviceId);
    if (!l) return;
    this.#listening.delete(deviceId);
    l.link.off("deferred", l.onDeferred);
    l.link.stopListening(c2dFilter(deviceId));
    this.#links.release(deviceId, l.link);
  }

  /** Its identity is gone: what waited for it is forgotten (the parent forgets it too). */
  forget(deviceId: string): void {
    this.unlisten(deviceId);
    this.#seeded.delete(deviceId);
    for (const copies of this.#pending.get(deviceId)?.values() ?? [])
      for (const p of copies) clearTimeout(p.expiry);
    this.#pending.delete(deviceId);
    this.#completed.forget(deviceId);
  }

  close(): void {
    this.#closed = true;
    this.#registry.off("revoked", this.#onRevoked);
    for (const deviceId of [...this.#listening.keys()]) this.unlisten(deviceId);
    for (const pending of this.#pending.values())
      for (const copies of pending.values()) for (const p of copies) clearTimeout(p.expiry);
    this.#pending.clear();
  }

  /** The child completed a message of its queue (`DeviceDelivery.onCompleted`): so is the parent's copy. */
  completed(clientId: string, m: StoredMessage): void {
    const tag = m.properties[FORWARD_ID];
    if (tag === undefined || !tag.startsWith(KEY_PREFIX)) return;
    this.#done(clientId, tag.slice(KEY_PREFIX.length));
  }

  /** A stored copy with `key` is done (`which`, or the oldest): the parent's copies waiting for it are completed. */
  #done(deviceId: string, key: string, which?: Pending): void {
    this.#completed.add(deviceId, key);
    const p = this.#drop(deviceId, key, which);
    if (!p) return;
    clearTimeout(p.expiry);
    for (const complete of p.completes) complete();
  }

  /** Removes a pending copy of `key` (`which`, or the oldest); the one removed. */
  #drop(deviceId: string, key: string, which?: Pending): Pending | undefined {
    const pending = this.#pending.get(deviceId);
    const copies = pending?.get(key);
    if (!pending || !copies) return undefined;
    const i = which === undefined ? 0 : copies.indexOf(which);
    if (i < 0) return undefined;
    const [p] = copies.splice(i, 1);
    if (copies.length === 0) pending.delete(key);
    if (pending.size === 0) this.#pending.delete(deviceId);
    return p;
  }

  /** Reads the relay keys of messages stored for `deviceId` and not completed (after a restart). */
  async #seed(deviceId: string): Promise<void> {
    if (this.#seeded.has(deviceId)) return;
    this.#seeded.add(deviceId);
    const queue = deliveryQueue(deviceId);
    let from = 0;
    let seen = 0;
    while (seen < SEEDED) {
      const batch = await this.#store.read(queue, { from, limit: 512, maxBytes: 4 * 1024 * 1024 });
      const last = batch.at(-1);
      if (!last) return;
      for (const m of batch) {
        const tag = m.properties[FORWARD_ID];
        const key = tag?.startsWith(KEY_PREFIX) ? tag.slice(KEY_PREFIX.length) : undefined;
        // Completed since the read began (its queue's acknowledgement not written yet): not waiting.
        if (key !== undefined && !this.#completed.has(deviceId, key)) this.#wait(deviceId, key, m.expiresAt);
      }
      seen += batch.length;
      from = last.offset + 1;
    }
  }

  /** Notes `key` as stored and not completed; past `expiresAt` the stored copy is gone, so it counts as done. */
  #wait(deviceId: string, key: string, expiresAt: number | null): Pending {
    let pending = this.#pending.get(deviceId);
    if (!pending) {
      pending = new Map();
      this.#pending.set(deviceId, pending);
    }
    const p: Pending = { completes: [], expiry: undefined };
    if (expiresAt !== null) {
      // Expired locally: the parent's copy is expired too, and holds back later PUBACKs no longer.
      p.expiry = setTimeout(() => this.#done(deviceId, key, p), Math.max(0, expiresAt - Date.now()));
      p.expiry.unref();
    }
    const copies = pending.get(key);
    if (copies) copies.push(p);
    else pending.set(key, [p]);
    return p;
  }

  async #arrived(deviceId: string, topic: string, payload: Buffer, inbound: Inbound): Promise<void> {
    let checked: ReturnType<typeof check>;
    try {
      checked = check(deviceId, topic, payload);
    } catch (err) {
      if (!(err instanceof Refused)) throw err;
      this.#log.log("warn", "c2d-relay-refused", { deviceId, reason: err.message, bytes: payload.length });
      inbound.complete();
      return;
    }
    const { properties, bag, expiresAt } = checked;
    const mid = properties["$.mid"];
    const digest = mid === undefined ? `h:${digestOf(bag, payload)}` : undefined;
    const key = mid === undefined ? (digest as string) : `m:${mid}`;
    // A resend: matched by `$.mid`, or by digest when the parent says it is one.
    if (mid !== undefined || inbound.dup) {
      const waiting = this.#pending.get(deviceId)?.get(key)?.[0];
      if (waiting) {
        waiting.completes.push(() => inbound.complete());
        return;
      }
      if (this.#completed.has(deviceId, key)) {
        inbound.complete();
        return;
      }
    }
    const now = Date.now();
    if (expiresAt !== null && expiresAt <= now) {
      this.#log.log("info", "c2d-relay-expired", { deviceId });
      inbound.complete();
      return;
    }
    const ttlSecs = expiresAt === null ? DEFAULT_TTL_SECS : Math.max(1, Math.ceil((expiresAt - now) / 1000));
    const p = this.#wait(deviceId, key, now + ttlSecs * 1000);
    p.completes.push(() => inbound.complete());
    properties[FORWARD_ID] = KEY_PREFIX + key;
    try {
      await this.#delivery.relayC2D(deviceId, payload, properties, ttlSecs);
    } catch (err) {
      // Not stored: a resend must be stored, not matched.
      clearTimeout(this.#drop(deviceId, key, p)?.expiry);
      throw err;
    }
  }
}

/** A digest of a message without `$.mid` (its properties as sent and its body). */
function digestOf(bag: string, body: Buffer): string {
  return createHash("sha256").update(bag).update("\0").update(body).digest("base64url").slice(0, 22);
}

/**
 * Checks a C2D PUBLISH from the parent: the topic names `deviceId`, the bag is readable and
 * within bounds, names are IoT Hub's, the body within IoT Hub's limit. Returns the properties
 * to store (null-prototype; unknown `$`-keys dropped: they are the hubs' own, never the
 * parent's to set) and the expiry (ms since the epoch, null for none).
 */
function check(
  deviceId: string,
  topic: string,
  payload: Buffer,
): { properties: Record<string, string>; bag: string; expiresAt: number | null } {
  const m = C2D_TOPIC.exec(topic);
  if (!m || m[1] !== deviceId) throw new Refused("the topic is not this device's C2D topic");
  const bag = (m[2] as string).replace(/\/$/, "");
  if (bag.length > MAX_C2D_BAG) throw new Refused(`a property bag over ${MAX_C2D_BAG} bytes`);
  if (payload.length > MAX_C2D_BODY) throw new Refused(`a body over ${MAX_C2D_BODY} bytes`);
  const decoded = decodePropertyBag(bag);
  if (!decoded) throw new Refused("the property bag is not valid url-encoding");
  const properties = record<string>();
  let count = 0;
  for (const k of Object.keys(decoded)) {
    if (++count > MAX_C2D_PROPERTIES) throw new Refused(`over ${MAX_C2D_PROPERTIES} properties`);
    if (k.startsWith("$")) {
      if (SYSTEM_KEYS.has(k)) properties[k] = decoded[k] as string;
      continue;
    }
    if (!NAME.test(k))
      throw new Refused(`property name ${JSON.stringify(k.slice(0, 64))} is not one IoT Hub allows`);
    properties[k] = decoded[k] as string;
  }
  const exp = properties["$.exp"];
  let expiresAt: number | null = null;
  if (exp !== undefined) {
    expiresAt = Date.parse(exp);
    if (Number.isNaN(expiresAt)) throw new Refused("$.exp is not a date");
  }
  return { properties, bag, expiresAt };
}
