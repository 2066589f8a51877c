/**
 * The Event Hubs–compatible endpoint of a root hub, as the hub lends it to every AMQP
 * connection: one event hub named `eventHub.name` (the connection string's `EntityPath`)
 * at `sb://{hostname}/`, one partition `"0"` over the events queue (sequence number and
 * offset = the store offset, enqueued time = the store's), consumer groups `$Default` and
 * `eventHub.consumerGroups`, tokens signed with the `iothubowner` key as Event Hubs clients
 * sign them, and a bound on the readers of the whole hub.
 */
import type { Authenticator } from "../../auth/authenticator.js";
import { parseSasToken, signedByAny } from "../../auth/sas.js";
import { EdgeHubError, ErrorCodes } from "../../errors.js";
import type { EventFeed } from "../../service/follower.js";
import type { StoredMessage } from "../../store/index.js";
import type { Refusal } from "../dispositions.js";

/** The one partition. */
export const PARTITION_IDS: readonly string[] = Object.freeze(["0"]);
/** The consumer group every event hub has. */
export const DEFAULT_CONSUMER_GROUP = "$Default";
/** The policy whose key signs tokens (the service side's). */
export const POLICY_NAME = "iothubowner";
/** IoT Hub's own name of its events on its host (`EntityPath=messages/events`): taken beside the event hub's. */
export const IOT_HUB_ENTITY = "messages/events";

/** A reader's place among the readers of one consumer group's partition. */
interface Claim {
  /** Its owner level (`com.microsoft:epoch`); undefined: none. */
  epoch: number | undefined;
  /** Detaches it: a reader of a higher owner level came. */
  kick(description: string): void;
}

/** What the endpoint is made of. */
export interface EventHubOptions {
  /** The hub's hostname: the `Endpoint` host and the tokens' audience host. */
  hostname: string;
  /** The event hub's name (`EntityPath`). */
  name: string;
  /** Consumer groups besides `$Default`. */
  consumerGroups: readonly string[];
  /** Readers open at once on the whole hub. */
  maxReceivers: number;
  /** The `iothubowner` key. */
  key: string;
  /** Checks a token's expiry (and its lifetime cap). */
  authenticator: Pick<Authenticator, "checkExpiry">;
  /** The store and its "stored" notifications. */
  feed: Pick<EventFeed, "store" | "onStored">;
  /** The queue partition 0 reads: the root's events queue. */
  queue: string;
}

/** `Endpoint=sb://{hostname}/;SharedAccessKeyName=iothubowner;SharedAccessKey={key};EntityPath={name}`. */
export function eventHubConnectionString(hostname: string, key: string, name: string): string {
  return `Endpoint=sb://${hostname}/;SharedAccessKeyName=${POLICY_NAME};SharedAccessKey=${key};EntityPath=${name}`;
}

/** An audience or address without scheme, host case or trailing slash: `host/path…`, lower case. */
export function audiencePath(audience: string): string {
  return audience
    .replace(/^(?:sb|amqps?):\/\//i, "")
    .replace(/\/+$/, "")
    .toLowerCase();
}

/** The hub's event hub. */
export class EventHub {
  readonly hostname: string;
  readonly name: string;
  readonly queue: string;
  readonly feed: EventHubOptions["feed"];
  /** Reported as the event hub's `created_at`: when this hub started serving it. */
  readonly createdAt = new Date();
  readonly #groups: ReadonlyMap<string, string>;
  readonly #key: string;
  readonly #authenticator: EventHubOptions["authenticator"];
  readonly #maxReceivers: number;
  #receivers = 0;
  /** The readers of each `{group}/{partition}` (lower case) by owner level. */
  readonly #claims = new Map<string, Set<Claim>>();

  constructor(o: EventHubOptions) {
    this.hostname = o.hostname;
    this.name = o.name;
    this.queue = o.queue;
    this.feed = o.feed;
    this.#key = o.key;
    this.#authenticator = o.authenticator;
    this.#maxReceivers = o.maxReceivers;
    // Event Hubs names are case-insensitive.
    this.#groups = new Map(
      [DEFAULT_CONSUMER_GROUP, ...o.consumerGroups].map((g) => [g.toLowerCase(), g] as const),
    );
  }

  /** `{hostname}/{name}` in lower case: the root of the audiences this event hub takes. */
  get root(): string {
    return `${this.hostname}/${this.name}`.toLowerCase();
  }

  /** The entity names this event hub answers to: its own, and IoT Hub's `messages/events`. */
  get entities(): readonly string[] {
    return [this.name, IOT_HUB_ENTITY];
  }

  /**
   * When `path` (an address without scheme, host or leading `/`) is under one of
   * {@link entities}: that entity and the rest of the path (`""` or `/…`).
   */
  entityOf(path: string): { entity: string; rest: string } | undefined {
    const lower = path.toLowerCase();
    for (const entity of this.entities) {
      const e = entity.toLowerCase();
      if (lower === e || lower.startsWith(`${e}/`)) return { entity, rest: path.slice(e.length) };
    }
    return undefined;
  }

  /** The connection string a consumer reads with. */
  connectionString(): string {
    return eventHubConnectionString(this.hostname, this.#key, this.name);
  }

  /** True when `audience` (a put-token's name) is this event hub's (either entity) or under it. */
  names(audience: string): boolean {
    const path = audiencePath(audience);
    const host = `${this.hostname.toLowerCase()}/`;
    return path.startsWith(host) && this.entityOf(path.slice(host.length)) !== undefined;
  }

  /** Every consumer group, `$Default` first. */
  get consumerGroups(): string[] {
    return [...this.#groups.values()];
  }

  /** The consumer group `name` as configured; undefined for one this hub does not have. */
  group(name: string): string | undefined {
    return this.#groups.get(name.toLowerCase());
  }

  /**
   * Checks a token put for `audience`: an `iothubowner` SAS token whose resource is the
   * audience or an ancestor of it under this event hub, signed as Event Hubs clients sign
   * (the key's text as HMAC key). Returns its expiry (ms); throws an `AUTH_*` error.
   */
  verifyToken(token: string, audience: string): number {
    const t = parseSasToken(token);
    this.#authenticator.checkExpiry(t.expiry, POLICY_NAME);
    const resource = audiencePath(t.resource);
    const wanted = audiencePath(audience);
    const covers = wanted === resource || wanted.startsWith(`${resource}/`);
    if (t.keyName !== POLICY_NAME || !covers || !this.names(resource))
      throw new EdgeHubError(
        ErrorCodes.AUTH_WRONG_AUDIENCE,
        `the token is not an ${POLICY_NAME} token for sb://${this.root} (or its ${IOT_HUB_ENTITY}) covering ${audience}`,
      );
    if (!signedByAny(t, [this.#key], "utf8"))
      throw new EdgeHubError(ErrorCodes.AUTH_BAD_SIGNATURE, "token signature does not match");
    return t.expiry * 1000;
  }

  /** One more reader, if the hub's bound allows; a refusal otherwise. */
  takeReceiver(): Refusal | undefined {
    if (this.#receivers >= this.#maxReceivers)
      return {
        condition: "amqp:resource-limit-exceeded",
        description: `at most ${this.#maxReceivers} event readers on this hub (eventHub.maxReceivers)`,
      };
    this.#receivers++;
    return undefined;
  }

  /** A reader went. */
  releaseReceiver(): void {
    this.#receivers--;
  }

  /**
   * A reader of `group`'s `partition` with owner level `epoch`, as Event Hubs rules them
   * (`com.microsoft:epoch`, the client's `ownerLevel`): one of a higher level detaches those
   * of lower or none (`amqp:link:stolen`, the client's ReceiverDisconnectedError); one of a
   * lower level or none is refused while a higher is there. Returns its release, or the refusal.
   */
  claim(
    group: string,
    partition: string,
    epoch: number | undefined,
    kick: Claim["kick"],
  ): Refusal | (() => void) {
    const key = `${group.toLowerCase()}/${partition}`;
    const claims = this.#claims.get(key) ?? new Set<Claim>();
    const levels = [...claims].map((c) => c.epoch ?? -1);
    const highest = Math.max(-1, ...levels);
    if ((epoch ?? -1) < highest)
      return {
        condition: "amqp:link:stolen",
        description: `a receiver with owner level ${highest} reads ${group}/Partitions/${partition}; this one's is ${epoch ?? "none"}`,
      };
    if (epoch !== undefined)
      for (const c of [...claims])
        if ((c.epoch ?? -1) < epoch) {
          claims.delete(c);
          c.kick(
            `a receiver with owner level ${epoch} now reads ${group}/Partitions/${partition}; this one's is ${c.epoch ?? "none"}`,
          );
        }
    const claim: Claim = { epoch, kick };
    claims.add(claim);
    this.#claims.set(key, claims);
    return () => {
      claims.delete(claim);
      if (claims.size === 0 && this.#claims.get(key) === claims) this.#claims.delete(key);
    };
  }

  /** Readers open now. */
  get receivers(): number {
    return this.#receivers;
  }

  /**
   * Where the partition stands: its first live offset, the next one, and the last event
   * (undefined when none is kept). `known`: that event when the caller holds it already.
   */
  async ends(
    known?: StoredMessage,
  ): Promise<{ head: number; tail: number; last: StoredMessage | undefined }> {
    const { store } = this.feed;
    const q = store.queueNow(this.queue);
    const tail = q?.tail ?? 0;
    if (!q || q.count === 0) return { head: tail, tail, last: undefined };
    const last =
      known?.offset === tail - 1
        ? known
        : (await store.read(this.queue, { from: tail - 1, limit: 1, maxBytes: 1 }))[0];
    return { head: q.head, tail, last };
  }
}
