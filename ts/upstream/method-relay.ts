/**
 * Direct methods from the parent to this hub's clients, while the parent is reachable:
 * as long as a client connected here listens for methods, its link to the parent (the one
 * its messages and twin use) subscribes to them too, and each call arriving there is
 * invoked on the client here and answered upstream with the client's status and payload
 * (404 when it went away, 504 when it did not answer in time). When it stops listening the
 * link unsubscribes, so the parent answers its next call with 404 itself, as Microsoft's
 * edge hub does (HC `SubscriptionProcessor.cs#ProcessSubscription`, CP
 * `CloudProxy.cs#SetupCallMethodAsync`, `#RemoveCallMethodAsync`).
 */
import type { Logger } from "../log.js";
import { type DirectMethods, methodPayload, PARENT_CALLER } from "../methods/direct-methods.js";
import { TOPICS } from "../vocabulary.js";
import type { Link } from "./link.js";
import type { TwinLinks } from "./twin-sync.js";

/** The parent's method calls to the link's identity. */
export const METHOD_CALLS = TOPICS.methodsFilter.text;
const REQUEST = /^\$iothub\/methods\/POST\/([^/]+)\/\?(.*)$/;

/** `decodeURIComponent`, or undefined for text that is not valid url-encoding. */
function decodeName(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

/** Relays the parent's method calls to clients connected here. */
export class MethodRelay {
  readonly #links: TwinLinks;
  readonly #methods: DirectMethods;
  readonly #log: Logger;
  readonly #listening = new Map<
    string,
    { link: Link; onMessage: (topic: string, payload: Buffer) => void }
  >();

  constructor(links: TwinLinks, methods: DirectMethods, log: Logger) {
    this.#links = links;
    this.#methods = methods;
    this.#log = log;
  }

  /** `clientId` connected here listens for methods: so does its link to the parent. */
  listen(clientId: string): void {
    if (this.#listening.has(clientId)) return;
    const link = this.#links.linkFor(clientId);
    const onMessage = (topic: string, payload: Buffer) => {
      const m = REQUEST.exec(topic);
      if (!m) return;
      const rid = new URLSearchParams(m[2]).get("$rid");
      if (rid === null) return;
      const methodName = decodeName(m[1] as string);
      // A name that is not valid url-encoding (a bare `%`) is the parent's mistake: it is told,
      // and nothing throws here (this runs inside the link's socket handler).
      if (methodName === undefined)
        this.#answer(clientId, link, m[1] as string, rid, 400, {
          errorCode: 400004,
          message: "the method name is not valid url-encoding",
        });
      else
        this.#relay(clientId, link, methodName, rid, payload).catch((err: unknown) =>
          this.#answer(clientId, link, methodName, rid, 500, {
            errorCode: 500001,
            message: (err as Error).message,
          }),
        );
    };
    link.on("message", onMessage);
    link.listenTo(METHOD_CALLS);
    link.start();
    this.#listening.set(clientId, { link, onMessage });
  }

  /** It went away. */
  unlisten(clientId: string): void {
    const l = this.#listening.get(clientId);
    if (!l) return;
    this.#listening.delete(clientId);
    l.link.off("message", l.onMessage);
    l.link.stopListening(METHOD_CALLS);
    this.#links.release(clientId, l.link);
  }

  close(): void {
    for (const clientId of [...this.#listening.keys()]) this.unlisten(clientId);
  }

  async #relay(
    clientId: string,
    link: Link,
    methodName: string,
    rid: string,
    payload: Buffer,
  ): Promise<void> {
    const r = await this.#methods.invoke(
      clientId,
      { methodName, payload: methodPayload(payload) },
      PARENT_CALLER,
    );
    this.#answer(clientId, link, methodName, rid, r.status, r.payload ?? null);
  }

  #answer(
    clientId: string,
    link: Link,
    methodName: string,
    rid: string,
    status: number,
    body: unknown,
  ): void {
    link.publish(
      TOPICS.methodResponse.format({ status: String(status), query: `$rid=${encodeURIComponent(rid)}` }),
      Buffer.from(JSON.stringify(body)),
      (err) => {
        if (err) this.#log.log("warn", "method-relay-failed", { clientId, methodName, reason: err.message });
      },
    );
  }
}
