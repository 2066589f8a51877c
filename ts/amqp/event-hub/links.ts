/**
 * The event hub's links, as ../links/router.ts hands them over by address: a reader at
 * `{hub}/ConsumerGroups/{group}/Partitions/{partition}` (./reader.ts) and the two links of
 * `$management` (./management.ts). Each is let in only under a token put on `$cbs` for its
 * audience (`sb://{host}/{hub}/…`; ./session.ts), and refused with the condition Event Hubs
 * gives, which @azure/event-hubs turns into its error: `amqp:not-found` with Event Hubs'
 * "The messaging entity … could not be found" for a consumer group (MessagingEntityNotFoundError),
 * `com.microsoft:argument-out-of-range` for a partition (ArgumentOutOfRangeError),
 * `com.microsoft:argument-error` for a filter (ArgumentError), `amqp:unauthorized-access`
 * without a token (UnauthorizedError). The endpoint is read-only: nothing is sent to it.
 */
import type { Delivery, Message, Receiver, Sender } from "rhea";
import { ADDRESSES } from "../../vocabulary.js";
import type { Refusal } from "../dispositions.js";
import { type EventHub, PARTITION_IDS } from "./event-hub.js";
import { answer, answerMessage, MANAGEMENT } from "./management.js";
import { BadFilter, startOf } from "./position.js";
import { PartitionReader, type ReaderHost, RUNTIME_METRIC } from "./reader.js";
import type { EventHubSession } from "./session.js";

/** Readers one connection may hold (a consumer of every partition needs one: there is one). */
export const MAX_READERS_PER_CONNECTION = 8;
/** Management requests answered at once on one link. */
const MANAGEMENT_CREDIT = 8;

/** What the event hub's links need from their connection. */
export interface EventHubHost extends ReaderHost {
  /** The connection's Event Hubs tokens, once one was put. */
  readonly eventHub: EventHubSession | undefined;
  settle(delivery: Delivery, error?: Refusal): void;
}

/** An event hub link's role: what ends it, and what its messages do (a management request). */
export interface EventHubRole {
  kind: "event-hub";
  end(): void;
  onMessage?(delivery: Delivery, message: Message | Buffer | undefined): void;
}

type Link = Sender | Receiver;

/** A name from the client, quoted and cut short for an error description. */
const quoted = (s: string) => JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s);

/** The attach property of a reader's owner level (the client's `ownerLevel`). */
const EPOCH = "com.microsoft:epoch";

/** A reader's owner level from its attach properties: undefined for none, null for a bad one. */
function ownerLevelOf(properties: unknown): number | undefined | null {
  if (typeof properties !== "object" || properties === null || !Object.hasOwn(properties, EPOCH))
    return undefined;
  const v: unknown = (properties as Record<string, unknown>)[EPOCH];
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : null;
}

/** The attach the client sent (rhea's typings leave `remote` out). */
function remoteAttach(link: Link): {
  source?: { filter?: unknown };
  target?: { address?: unknown };
  desired_capabilities?: unknown;
  properties?: unknown;
} {
  return (link as unknown as { remote: { attach?: Record<string, never> } }).remote.attach ?? {};
}

/**
 * The role of a link at `path` (the address without scheme and host, no leading `/`) if it
 * is the event hub's; undefined for an address that is not (the router goes on).
 */
export function eventHubRole(
  host: EventHubHost,
  link: Link,
  path: string,
  hub: EventHub,
): EventHubRole | Refusal | undefined {
  const management = path === MANAGEMENT;
  const entity = management ? undefined : hub.entityOf(path);
  if (!management && !entity) return undefined;
  const session = host.eventHub;
  // `$management` names no entity: a token for either entity's management node covers it.
  const audience = management
    ? (hub.entities.map((e) => `${hub.hostname}/${e}/${MANAGEMENT}`).find((a) => session?.covers(a)) ??
      `${hub.root}/${MANAGEMENT}`)
    : `${hub.hostname}/${path}`;
  if (!session?.covers(audience))
    return {
      condition: "amqp:unauthorized-access",
      description: `put a token for sb://${audience} on $cbs first`,
    };
  if (management) return managementRole(host, session, link, hub, audience);
  if (link.is_receiver())
    return { condition: "amqp:not-allowed", description: "the Event Hubs endpoint is read-only" };
  const address = ADDRESSES.eventHubPartition.parse(`${hub.name}${entity?.rest ?? ""}`);
  if (!address)
    return {
      condition: "amqp:not-found",
      description: `${quoted(path)} is not an event hub partition address ({hub}/ConsumerGroups/{group}/Partitions/{id})`,
    };
  // Event Hubs' words: the client names the error MessagingEntityNotFoundError by them.
  if (!hub.group(address.group))
    return {
      condition: "amqp:not-found",
      description: `The messaging entity 'sb://${hub.hostname}/${hub.name}/ConsumerGroups/${address.group.slice(0, 64)}' could not be found (eventHub.consumerGroups lists the groups besides $Default)`,
    };
  if (!PARTITION_IDS.includes(address.partition))
    return {
      condition: "com.microsoft:argument-out-of-range",
      description: `the partition ${quoted(address.partition)} does not exist: ${hub.name} has ${PARTITION_IDS.join(", ")}`,
    };
  let start: ReturnType<typeof startOf>;
  try {
    start = startOf(remoteAttach(link).source?.filter);
  } catch (err) {
    if (!(err instanceof BadFilter)) throw err;
    return { condition: "com.microsoft:argument-error", description: err.message };
  }
  const epoch = ownerLevelOf(remoteAttach(link).properties);
  if (epoch === null)
    return { condition: "com.microsoft:argument-error", description: `${EPOCH} must be an integer >= 0` };
  if (session.readers >= MAX_READERS_PER_CONNECTION)
    return {
      condition: "amqp:resource-limit-exceeded",
      description: `at most ${MAX_READERS_PER_CONNECTION} event readers on one connection`,
    };
  const release = hub.claim(address.group, address.partition, epoch, (description) => {
    if (!link.is_closed()) link.close({ condition: "amqp:link:stolen", description });
    session.drop(link);
  });
  if (typeof release !== "function") return release;
  const refused = hub.takeReceiver();
  if (refused) {
    release();
    return refused;
  }
  session.readers++;
  // Events go settled (at most once on the wire; the consumer's checkpoint is its own).
  (link as unknown as { local: { attach: { snd_settle_mode: number } } }).local.attach.snd_settle_mode = 1;
  const desired = remoteAttach(link).desired_capabilities;
  const metric = desired === RUNTIME_METRIC || (Array.isArray(desired) && desired.includes(RUNTIME_METRIC));
  const reader = new PartitionReader(host, link as Sender, hub, start, metric);
  let ended = false;
  const end = () => {
    if (ended) return;
    ended = true;
    reader.close();
    release();
    session.readers--;
    hub.releaseReceiver();
  };
  session.adopt(link, audience, end);
  return { kind: "event-hub", end: () => session.drop(link) };
}

/** The two links of `$management`: requests come on our receiver, answers go on our sender. */
function managementRole(
  host: EventHubHost,
  session: EventHubSession,
  link: Link,
  hub: EventHub,
  audience: string,
): EventHubRole {
  if (link.is_sender()) {
    const sender = link as Sender;
    const target = remoteAttach(link).target?.address;
    const replyTo = typeof target === "string" ? target : "";
    (link as unknown as { local: { attach: { snd_settle_mode: number } } }).local.attach.snd_settle_mode = 1;
    session.replies.set(replyTo, sender);
    const end = () => {
      if (session.replies.get(replyTo) === sender) session.replies.delete(replyTo);
    };
    session.adopt(link, audience, end);
    return { kind: "event-hub", end: () => session.drop(link) };
  }
  const receiver = link as Receiver;
  receiver.add_credit(MANAGEMENT_CREDIT);
  session.adopt(link, audience, () => {});
  return {
    kind: "event-hub",
    end: () => session.drop(link),
    onMessage: (delivery, message) => {
      if (!message || Buffer.isBuffer(message)) {
        host.settle(delivery, { condition: "amqp:decode-error", description: "not an AMQP message" });
        receiver.add_credit(1);
        return;
      }
      host.settle(delivery);
      void answer(hub, message).then(
        (a) => {
          if (host.closed) return;
          const replyTo = typeof message.reply_to === "string" ? message.reply_to : "";
          const out = session.replies.get(replyTo) ?? [...session.replies.values()][0];
          if (out?.is_open()) out.send(answerMessage(message, a));
          if (receiver.is_open()) receiver.add_credit(1);
        },
        (err: unknown) => {
          host.ctx.log.log("warn", "event-hub-management-failed", { reason: (err as Error).message });
          if (receiver.is_open()) receiver.add_credit(1);
        },
      );
    },
  };
}
