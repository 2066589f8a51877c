/**
 * The store queues of deliveries to one client: cloud-to-device messages and
 * `DeviceEndpoint` routes go to `$c2d/{device}`, `BrokeredEndpoint` routes to
 * `$inputs/{device}/{module}`. A route with a priority uses the queue of that priority
 * (`…/p0` highest … `…/p9`); routes without one use the base queue, drained last (as IoT
 * Edge, where a route without a priority has the lowest).
 */
import { PRIORITIES } from "../routing/priority.js";

/** The base delivery queue of a client id (`deviceId` or `deviceId/moduleId`). */
export function deliveryQueue(clientId: string): string {
  return clientId.includes("/") ? `$inputs/${clientId}` : `$c2d/${clientId}`;
}

/** A delivery queue's client and its place in the drain order (0 first, {@link PRIORITIES} for the base). */
export interface QueueOwner {
  clientId: string;
  rank: number;
}

/** Whose delivery queue `queue` is; undefined for any other queue. */
export function ownerOf(queue: string): QueueOwner | undefined {
  let rest: string;
  let segments: number;
  if (queue.startsWith("$inputs/")) {
    rest = queue.slice(8);
    segments = 2;
  } else if (queue.startsWith("$c2d/")) {
    rest = queue.slice(5);
    segments = 1;
  } else return undefined;
  // Device and module ids hold no "/": a further segment is the priority.
  const parts = rest.split("/");
  if (parts.length === segments) return { clientId: rest, rank: PRIORITIES };
  const p = parts[segments];
  if (parts.length !== segments + 1 || p === undefined || !/^p[0-9]$/.test(p)) return undefined;
  return { clientId: parts.slice(0, segments).join("/"), rank: Number(p.slice(1)) };
}
