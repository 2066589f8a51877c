/**
 * The event hub's `$management` node, as @azure/event-hubs asks it (`managementClient.js`,
 * 6.0.4): a request on a sender to `$management` with application properties
 * `operation: READ`, `name: {hub}`, `type: com.microsoft:eventhub` or
 * `com.microsoft:partition` (with `partition`), and `security_token` (a token for
 * `sb://{host}/{hub}`); the answer on the client's receiver from `$management` whose target is
 * the request's `reply_to`, correlated by its message id, `status-code` and
 * `status-description` in application properties and the figures as a map body.
 */
import type { Message } from "rhea";
import rhea from "rhea";
import { type EventHub, PARTITION_IDS } from "./event-hub.js";

/** The address of the node. */
export const MANAGEMENT = "$management";

/** An answer: status and, on success, the body. */
interface Answer {
  status: number;
  description: string;
  /** The AMQP condition the client's error is named by, when the status alone does not say it. */
  condition?: string;
  body?: Record<string, unknown>;
}

const fail = (status: number, description: string, condition?: string): Answer => ({
  status,
  description,
  ...(condition ? { condition } : {}),
});

/** Reads one application property of a request, own keys only. */
function prop(m: Message, key: string): unknown {
  const app: unknown = m.application_properties;
  if (typeof app !== "object" || app === null || !Object.hasOwn(app, key)) return undefined;
  return (app as Record<string, unknown>)[key];
}

/** The answer to a management request `m`. */
export async function answer(hub: EventHub, m: Message): Promise<Answer> {
  const operation = prop(m, "operation");
  const type = prop(m, "type");
  const name = prop(m, "name");
  const token = prop(m, "security_token");
  if (operation !== "READ") return fail(400, "operation must be READ");
  if (type !== "com.microsoft:eventhub" && type !== "com.microsoft:partition")
    return fail(400, "type must be com.microsoft:eventhub or com.microsoft:partition");
  const entity = typeof name === "string" ? hub.entityOf(name) : undefined;
  if (entity?.rest !== "")
    return fail(
      404,
      `The messaging entity 'sb://${hub.hostname}/${String(name)}' could not be found (the event hub is ${hub.name})`,
    );
  try {
    if (typeof token !== "string") throw new Error("security_token is missing");
    hub.verifyToken(token, `sb://${hub.hostname}/${entity.entity}`);
  } catch (err) {
    return fail(401, `security_token: ${(err as Error).message}`);
  }
  if (type === "com.microsoft:eventhub")
    return {
      status: 200,
      description: "OK",
      body: {
        name: hub.name,
        type,
        created_at: hub.createdAt,
        partition_count: PARTITION_IDS.length,
        partition_ids: [...PARTITION_IDS],
      },
    };
  const partition = prop(m, "partition");
  if (typeof partition !== "string" || !PARTITION_IDS.includes(partition))
    return fail(
      400,
      `the partition ${JSON.stringify(String(partition))} does not exist: ${hub.name} has ${PARTITION_IDS.join(", ")}`,
      "com.microsoft:argument-out-of-range",
    );
  return {
    status: 200,
    description: "OK",
    body: { name: hub.name, type, partition, ...(await partitionFigures(hub)) },
  };
}

/** The partition's figures: its first and last sequence numbers, the last offset and time. */
async function partitionFigures(hub: EventHub): Promise<Record<string, unknown>> {
  const { head, tail, last } = await hub.ends();
  return {
    begin_sequence_number: rhea.types.wrap_long(last ? head : tail),
    last_enqueued_sequence_number: rhea.types.wrap_long(tail - 1),
    last_enqueued_offset: String(tail - 1),
    last_enqueued_time_utc: new Date(last?.enqueuedAt ?? 0),
    is_partition_empty: last === undefined,
  };
}

/** The answer message to request `m`. */
export function answerMessage(m: Message, a: Answer): Message {
  const out: Message = {
    application_properties: {
      "status-code": a.status,
      "status-description": a.description,
      ...(a.condition ? { "error-condition": a.condition } : {}),
    },
    body: a.body,
  };
  if (m.message_id !== undefined) out.correlation_id = m.message_id;
  if (typeof m.reply_to === "string") out.to = m.reply_to;
  return out;
}
