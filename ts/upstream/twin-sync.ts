/**
 * Twins through outages, on an edge hub. The local twins are the cache clients read and
 * write at once; this module keeps them in step with the parent:
 *
 * - Reported patches (the device wins for reported): every patch a client makes is also
 *   appended to the durable `$twin-reported` log before its 204; when the parent is
 *   reachable they are sent up in order, each on the client's own twin link (on behalf of
 *   it), and the parent's `$version` replaces the local one. A patch the parent rejects
 *   (4xx) goes to the dead-letter queue with the reason, except 429 (throttled) and 403
 *   (IoT Hub's quota exceeded): those are "later", the patch is sent again after a jittered
 *   backoff (100 ms doubling to 10 s, the C# device SDK's default policy).
 * - Desired properties (upstream wins for desired): whenever the parent comes back, the twin
 *   of every client the hub holds is fetched; a difference is adopted whole and sent as one
 *   patch with the parent's `$version` to the client if connected — one that connects later
 *   reads the updated cache. While online, clients connected here get the parent's desired
 *   patches live over their twin link.
 */
import { randomUUID } from "node:crypto";
import { parseJson } from "../json.js";
import type { Logger } from "../log.js";
import type { MessageStore } from "../store/index.js";
import type { Twins } from "../twin/twins.js";
import { DEAD_LETTER_QUEUE, TWIN_REPORTED_QUEUE } from "../vocabulary.js";
import type { Link } from "./link.js";

/** The pending log of reported patches. */
const CLIENT = "c";
const REQUEST_TIMEOUT_MS = 10_000;
/** Twin answers that mean "later" (throttled, quota exceeded), not "never". */
const LATER_STATUSES = new Set([429, 403]);
/** Backoff after a "later" answer: the C# device SDK's default, 100 ms doubling to 10 s. */
const LATER_FIRST_MS = 100;
const LATER_MAX_MS = 10_000;

/** The parent answered a reported patch with "later": the pending log waits and is sent again. */
class TwinLater extends Error {}
const IDLE_MS = 60_000;

/** The links of clients on the parent, shared with their lanes. */
export interface TwinLinks {
  linkFor(clientId: string): Link;
  release(clientId: string, link: Link): void;
}

/** Answers to a link's twin requests: subscribed on every identity link from the start. */
export const TWIN_RESPONSES = "$iothub/twin/res/#";
/**
 * Desired-property notifications: subscribed on an identity's link only while a client
 * here follows them (HC `SubscriptionProcessor.cs#ProcessSubscription`, CP
 * `CloudProxy.cs#SetupDesiredPropertyUpdatesAsync`).
 */
export const DESIRED_UPDATES = "$iothub/twin/PATCH/properties/desired/#";
/** Subscriptions of a twin link that always follows its desired properties (the hub's own settings). */
export const TWIN_TOPICS = [TWIN_RESPONSES, DESIRED_UPDATES];

interface Answer {
  status: number;
  version: number | undefined;
  body: Buffer;
}

/** One twin over a link: requests with `$rid`, answers matched back, desired patches passed on. */
export class TwinChannel {
  readonly link: Link;
  readonly #waiting = new Map<
    string,
    { resolve: (a: Answer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  idleTimer: NodeJS.Timeout | undefined;
  /** Clients connected here that follow this twin live. */
  holders = 0;

  constructor(link: Link, onDesired: (patch: Buffer) => void) {
    this.link = link;
    link.on("message", (topic, payload) => {
      if (topic.startsWith("$iothub/twin/PATCH/properties/desired/")) {
        onDesired(payload);
        return;
      }
      const m = /^\$iothub\/twin\/res\/(\d{3})\/\?(.*)$/.exec(topic);
      if (!m) return;
      const q = new URLSearchParams(m[2]);
      const w = this.#waiting.get(q.get("$rid") ?? "");
      if (!w) return;
      this.#waiting.delete(q.get("$rid") ?? "");
      clearTimeout(w.timer);
      const v = q.get("$version");
      w.resolve({ status: Number(m[1]), version: v === null ? undefined : Number(v), body: payload });
    });
    link.on("down", (reason) => {
      for (const [rid, w] of this.#waiting) {
        clearTimeout(w.timer);
        w.reject(new Error(`twin link down: ${reason}`));
        this.#waiting.delete(rid);
      }
    });
  }

  /** Waits (bounded) for the link, then sends a GET or a reported PATCH and waits for its answer. */
  async request(kind: "GET" | "PATCH", body: Buffer): Promise<Answer> {
    if (!this.link.up) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("twin link did not come up")), REQUEST_TIMEOUT_MS);
        this.link.once("up", () => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    // A GUID per request, as the C# SDK's `MqttTransportHandler.cs#SendTwinGetAsync` and
    // `#SendTwinPatchAsync` make it; an answer is matched by it, one with any other `$rid` is ignored.
    const rid = randomUUID();
    const topic =
      kind === "GET"
        ? `$iothub/twin/GET/?$rid=${rid}`
        : `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`;
    return new Promise<Answer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(rid);
        reject(new Error("no twin answer from the parent in time"));
      }, REQUEST_TIMEOUT_MS);
      this.#waiting.set(rid, { resolve, reject, timer });
      this.link.publish(topic, body, (err) => {
        if (!err) return;
        clearTimeout(timer);
        this.#waiting.delete(rid);
        reject(err);
      });
    });
  }
}

/** Keeps an edge hub's twins in step with its parent. */
export class TwinSync {
  readonly #store: MessageStore;
  readonly #twins: Twins;
  readonly #links: TwinLinks;
  readonly #isKnown: (clientId: string) => boolean;
  readonly #log: Logger;
  readonly #channels = new Map<string, TwinChannel>();
  #online = false;
  #draining: Promise<void> | undefined;
  /** "Later" answers in a row (the backoff's exponent) and the retry they scheduled. */
  #laterCount = 0;
  #laterTimer: NodeJS.Timeout | undefined;

  /**
   * @param links the links of clients on the parent (subscribed to {@link TWIN_RESPONSES}).
   * @param isKnown true for a client of this hub's scope (others' twins are not synced).
   */
  constructor(
    store: MessageStore,
    twins: Twins,
    links: TwinLinks,
    isKnown: (clientId: string) => boolean,
    log: Logger,
  ) {
    this.#store = store;
    this.#twins = twins;
    this.#links = links;
    this.#isKnown = isKnown;
    this.#log = log;
    twins.journal = {
      entries: (clientId, patches) => ({
        queues: [TWIN_REPORTED_QUEUE],
        messages: patches.map((patch) => ({
          body: Buffer.from(JSON.stringify(patch)),
          properties: { [CLIENT]: clientId },
          ttlSecs: -1,
        })),
      }),
      written: () => {
        if (this.#online) this.#drain();
      },
    };
  }

  /** The parent is reachable: send the pending reported patches, then fetch every twin. */
  online(): void {
    this.#online = true;
    this.#drain();
  }

  offline(): void {
    this.#online = false;
    clearTimeout(this.#laterTimer);
    this.#laterCount = 0;
  }

  /**
   * Online, fetches `clientId`'s twin from the parent into the cache (a GET then answers
   * what the parent has); offline, or if the parent does not answer, the cache stands.
   */
  async refresh(clientId: string): Promise<void> {
    if (!this.#online || !this.#isKnown(clientId)) return;
    const ch = this.#channel(clientId);
    try {
      const answer = await ch.request("GET", Buffer.alloc(0));
      if (answer.status !== 200) return;
      const doc = parseJson(answer.body) as { desired?: Record<string, unknown> };
      if (doc.desired) await this.#twins.adoptDesired(clientId, doc.desired);
    } catch (err) {
      this.#log.log("warn", "twin-refresh-failed", { clientId, reason: (err as Error).message });
    } finally {
      this.#release(clientId, ch);
    }
  }

  /**
   * A client connected here listens to its desired properties: follow them live while
   * online, its link subscribed to them from now on. Once the parent acknowledged the
   * subscription the twin is fetched again: a change made upstream before it is not sent.
   */
  follow(clientId: string): void {
    const ch = this.#channel(clientId);
    if (ch.holders++ === 0) ch.link.listenTo(DESIRED_UPDATES, () => void this.refresh(clientId));
    clearTimeout(ch.idleTimer);
  }

  /** That client went away: nobody here follows, so the link stops listening. */
  unfollow(clientId: string): void {
    const ch = this.#channels.get(clientId);
    if (!ch) return;
    if (ch.holders > 0 && --ch.holders === 0) ch.link.stopListening(DESIRED_UPDATES);
    this.#release(clientId, ch);
  }

  close(): void {
    clearTimeout(this.#laterTimer);
    for (const [clientId, ch] of this.#channels) {
      clearTimeout(ch.idleTimer);
      this.#links.release(clientId, ch.link);
    }
    this.#channels.clear();
  }

  #channel(clientId: string): TwinChannel {
    let ch = this.#channels.get(clientId);
    if (!ch) {
      const created = new TwinChannel(this.#links.linkFor(clientId), (payload) => {
        void this.#onDesiredPatch(clientId, payload);
      });
      this.#channels.set(clientId, created);
      created.link.start();
      if (!this.#online) created.link.suspend();
      ch = created;
    }
    return ch;
  }

  /** Closes a channel nobody follows after a minute without requests. */
  #release(clientId: string, ch: TwinChannel): void {
    if (ch.holders > 0) return;
    clearTimeout(ch.idleTimer);
    ch.idleTimer = setTimeout(() => {
      if (ch.holders > 0) return;
      this.#channels.delete(clientId);
      this.#links.release(clientId, ch.link);
    }, IDLE_MS);
    ch.idleTimer.unref();
  }

  async #onDesiredPatch(clientId: string, payload: Buffer): Promise<void> {
    try {
      await this.#twins.adoptDesiredPatch(clientId, parseJson(payload) as Record<string, unknown>);
    } catch (err) {
      this.#log.log("warn", "twin-desired-patch-failed", { clientId, reason: (err as Error).message });
    }
  }

  #drain(): void {
    this.#draining ??= this.#run().finally(() => {
      this.#draining = undefined;
    });
  }

  async #run(): Promise<void> {
    for (const ch of this.#channels.values()) ch.link.wake();
    try {
      await this.#sendReported();
      if (this.#online) await this.#resyncDesired();
    } catch (err) {
      // Offline again, or the parent slow: the rest goes on the next return.
      this.#log.log("warn", "twin-sync-stopped", { reason: (err as Error).message });
      if (err instanceof TwinLater) this.#later();
    }
  }

  /** Sends the pending patches again after a jittered backoff (a "later" answer). */
  #later(): void {
    if (!this.#online) return;
    const cap = Math.min(LATER_MAX_MS, LATER_FIRST_MS * 2 ** this.#laterCount);
    this.#laterCount = Math.min(this.#laterCount + 1, 30);
    clearTimeout(this.#laterTimer);
    this.#laterTimer = setTimeout(
      () => {
        if (this.#online) this.#drain();
      },
      cap * (0.5 + Math.random() * 0.5),
    );
    this.#laterTimer.unref();
  }

  /** Sends the pending reported patches in order; the log is acknowledged one patch at a time. */
  async #sendReported(): Promise<void> {
    for (;;) {
      if (!this.#online) return;
      const batch = await this.#store.read(TWIN_REPORTED_QUEUE, { limit: 100 });
      if (batch.length === 0) return;
      for (const m of batch) {
        const clientId = m.properties[CLIENT] ?? "";
        if (!this.#isKnown(clientId)) {
          await this.#deadLetter(m.body, m.properties, `${clientId} is no longer in this hub's scope`);
          await this.#store.ack(TWIN_REPORTED_QUEUE, m.offset);
          continue;
        }
        const ch = this.#channel(clientId);
        const answer = await ch.request("PATCH", m.body);
        if (LATER_STATUSES.has(answer.status)) {
          // Not acknowledged: this patch and those after it wait, in order.
          this.#release(clientId, ch);
          throw new TwinLater(
            `the parent answered ${answer.status} to a reported patch of ${clientId}: later`,
          );
        }
        if (answer.status >= 200 && answer.status < 300) {
          this.#laterCount = 0;
          if (answer.version !== undefined) await this.#twins.adoptReportedVersion(clientId, answer.version);
        } else if (answer.status >= 400 && answer.status < 500) {
          const reason = `the parent rejected the reported patch of ${clientId}: ${answer.status} ${answer.body.toString()}`;
          await this.#deadLetter(m.body, m.properties, reason);
        } else throw new Error(`the parent answered ${answer.status} to a reported patch`);
        await this.#store.ack(TWIN_REPORTED_QUEUE, m.offset);
        this.#release(clientId, ch);
      }
    }
  }

  async #deadLetter(body: Buffer, properties: Record<string, string>, reason: string): Promise<void> {
    this.#log.log("warn", "twin-reported-dead-lettered", { reason });
    await this.#store.append(DEAD_LETTER_QUEUE, [
      { body, properties: { ...properties, "$.dlr": reason, "$.dlq": TWIN_REPORTED_QUEUE }, ttlSecs: -1 },
    ]);
  }

  /** Fetches every twin held here and adopts the parent's desired properties where they differ. */
  async #resyncDesired(): Promise<void> {
    const ids = (await this.#twins.clientIds()).filter((id) => this.#isKnown(id));
    for (const clientId of ids) {
      if (!this.#online) return;
      const ch = this.#channel(clientId);
      try {
        const answer = await ch.request("GET", Buffer.alloc(0));
        if (answer.status !== 200) continue;
        const doc = parseJson(answer.body) as { desired?: Record<string, unknown> };
        if (doc.desired && (await this.#twins.adoptDesired(clientId, doc.desired))) {
          this.#log.log("info", "twin-desired-resynced", { clientId, version: doc.desired.$version });
        }
      } catch (err) {
        // One twin that cannot be fetched does not hold back the others.
        this.#log.log("warn", "twin-resync-failed", { clientId, reason: (err as Error).message });
      } finally {
        this.#release(clientId, ch);
      }
    }
  }
}
