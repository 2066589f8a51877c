/**
 * What the forwarder needs from a kind of parent (IoT Hub's protocol, a plain MQTT broker):
 * which lane and link a message takes, and its form on the wire.
 */
import type { StoredMessage } from "../store/index.js";
import type { Link } from "./link.js";

/** A message as published to the parent. */
export interface WireForm {
  topic: string;
  payload: Buffer;
  /** MQTT 5 only. */
  userProperties?: Record<string, string>;
}

/** How messages meet the parent: lanes, links and the wire form. */
export interface Uplink {
  /** The lane of a message: messages of one lane share a link and keep their order. */
  laneOf(m: StoredMessage): string;
  /** The link of a lane; the forwarder starts it, and gives it back with {@link Uplink.release}. */
  linkFor(lane: string): Link;
  /** The forwarder is done with a lane's link (idle, or closing). */
  release(lane: string, link: Link): void;
  /** Why a message of `queue` can never be sent (it is dead-lettered), or undefined. */
  unsendable(m: StoredMessage, queue: string): string | undefined;
  /** Topic, payload and MQTT 5 user properties of a message, built when it is sent. */
  wireFormOf(m: StoredMessage, queue: string): WireForm;
  /** True when `refusals` refusals in a row of a lane's login mean its messages can never be sent. */
  refusedForGood(lane: string, refusals: number): boolean;
  /** True for a CONNACK code that means "later" (the parent is busy): not counted as a refusal. */
  transientRefusal(code: number): boolean;
}
