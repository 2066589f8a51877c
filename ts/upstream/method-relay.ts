/**
 * Direct methods from the parent to this hub's clients, while the parent is reachable:
 * as long as a client connected here listens for methods, its link to the parent (the one
 * its messages and twin use) listens too, and each call arriving there is invoked on the
 * client here and answered upstream with the client's status and payload (404 when it went
 * away, 504 when it did not answer in time).
 */
import type { Logger } from "../log.js";
import { type DirectMethods, methodPayload } from "../methods/direct-methods.js";
import type { Link } from "./link.js";
import type { TwinLinks } from "./twin-sync.js";

const REQUEST = /^\$iothub\/methods\/POST\/([^/]+)\/\?(.*)$/;

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
      void this.#relay(clientId, link, decodeURIComponent(m[1] as string), rid, payload);
    };
    link.on("message", onMessage);
    link.start();
    this.#listening.set(clientId, { link, onMessage });
  }

  /** It went away. */
  unlisten(clientId: string): void {
    const l = this.#listening.get(clientId);
    if (!l) return;
    this.#listening.delete(clientId);
    l.link.off("message", l.onMessage);
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
    const r = await this.#methods.invoke(clientId, { methodName, payload: methodPayload(payload) });
    link.publish(
      `$iothub/methods/res/${r.status}/?$rid=${encodeURIComponent(rid)}`,
      Buffer.from(JSON.stringify(r.payload ?? null)),
      (err) => {
        if (err) this.#log.log("warn", "method-relay-failed", { clientId, methodName, reason: err.message });
      },
    );
  }
}
