/** Route priorities and the queues they name. */

/** Priorities a route may give: 0 (highest) to 9. */
export const PRIORITIES = 10;

/**
 * The queue of messages of `priority` (0 highest … 9) beside `base` (upstream, a device, a
 * module); routes without one use the base queue, drained after them.
 */
export function priorityQueue(base: string, priority: number): string {
  return `${base}/p${priority}`;
}
