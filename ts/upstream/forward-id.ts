/**
 * The forwarder's id of a stored message (the router's `FORWARD_ID`, `$.fid`): how a
 * parent hub tells a resend of a message it stored from a distinct message that carries
 * the same device-chosen `$.mid`. One id per stored message, the same on every resend:
 * `{hub's device id}/{store incarnation}/{queue}/{offset}`.
 *
 * The store incarnation is random, created with the store and kept in its KV: offsets
 * start again at 0 in a wiped and recreated store, and its ids never repeat the old ones.
 * The queue is `u` for `$upstream` and `p0`…`p9` for the priority queues; only the hub's
 * id can hold a `/`, so the four parts never run into each other.
 *
 * Sent only to a parent configured as `parent.type: "edgehub"` (the form both ends agree
 * on); Azure IoT Hub gets nothing the device did not set (`Upstream.start`).
 */
import { randomBytes } from "node:crypto";
import type { MessageStore } from "../store/index.js";

const KV_NS = "upstream";
const KV_KEY = "incarnation";

/** The store's incarnation: read from its KV, or created and kept there on first use. */
export async function storeIncarnation(store: MessageStore): Promise<string> {
  const kept = await store.kv.get(KV_NS, KV_KEY);
  if (kept !== null && kept.length > 0) return kept.toString();
  // 72 random bits: two stores of one hub never meet on the same value.
  const made = randomBytes(9).toString("base64url");
  await store.kv.put(KV_NS, KV_KEY, made);
  return made;
}

/**
 * Makes the forwarder ids of one hub's store, for messages of its upstream queues, url-encoded
 * as they go in a property bag. Only the prefix can hold characters to escape (the queue part
 * is `u` or `p0`…`p9`, the offset digits), so it is encoded once, not per message.
 */
export function forwardIds(
  hubId: string,
  incarnation: string,
  upstreamQueue: string,
): (queue: string, offset: number) => string {
  const prefix = encodeURIComponent(`${hubId}/${incarnation}/`);
  return (queue: string, offset: number): string =>
    `${prefix}${queue === upstreamQueue ? "u" : queue.slice(upstreamQueue.length + 1)}%2F${offset}`;
}
