/**
 * Reading stored messages over the service API: one page of a queue (`from`, `limit`),
 * and the events queue as a stream of newline-delimited JSON kept open while messages
 * are stored.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { MessageStore, StoredMessage } from "../store/index.js";
import { ApiError } from "./http.js";
import { eventJson } from "./shapes.js";

/** Where the stream reads from and learns of new messages. */
export interface EventFeed {
  store: MessageStore;
  eventsQueue: string;
  /** Calls back whenever new device-to-cloud messages were stored; returns an unsubscribe. */
  onStored(listener: () => void): () => void;
}

/** One page of a queue (`from`, `limit` in the query) and where the next starts. */
export async function page(
  store: MessageStore,
  queue: string,
  url: URL,
  shape: (m: StoredMessage) => Record<string, unknown>,
): Promise<{ messages: Record<string, unknown>[]; next: number }> {
  const from = Number(url.searchParams.get("from") ?? 0);
  const limit = Number(url.searchParams.get("limit") ?? 100);
  if (
    !Number.isSafeInteger(from) ||
    from < 0 ||
    !Number.isSafeInteger(limit) ||
    limit < 1 ||
    limit > 10_000
  ) {
    throw new ApiError(400, "ArgumentInvalid", "from must be an offset >= 0 and limit 1-10000");
  }
  const batch = await store.read(queue, { from, limit });
  return { messages: batch.map(shape), next: (batch.at(-1)?.offset ?? from - 1) + 1 };
}

/**
 * `GET /messages/events/stream?from=<offset|end>`: the events queue as newline-delimited JSON, one
 * message per line, kept open and fed as messages are stored, until the client leaves.
 */
export async function streamEvents(
  feed: EventFeed,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  // `from=end`: only what is stored from now on (as `az iot hub monitor-events` starts).
  const fromText = url.searchParams.get("from") ?? "0";
  let from =
    fromText === "end"
      ? ((await feed.store.stats()).queues.find((q) => q.name === feed.eventsQueue)?.tail ?? 0)
      : Number(fromText);
  if (!Number.isSafeInteger(from) || from < 0)
    throw new ApiError(400, "ArgumentInvalid", "from must be an offset >= 0, or end");
  res.writeHead(200, {
    "content-type": "application/x-ndjson; charset=utf-8",
    "cache-control": "no-store",
  });
  // The reader learns it is following now, not with the first message.
  res.flushHeaders();
  // `dirty` is set by every store notification, so one landing during a read is not lost.
  let dirty = false;
  let wake: (() => void) | undefined;
  const unsubscribe = feed.onStored(() => {
    dirty = true;
    wake?.();
  });
  let open = true;
  const closed = () => {
    open = false;
    wake?.();
  };
  req.on("close", closed);
  res.on("close", closed);
  /** Waits for `arm`'s signal, a close, or `ms`; never leaves a timer or listener behind. */
  const pause = (ms: number, arm?: (done: () => void) => void) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
      wake = done;
      arm?.(done);
    });
  try {
    while (open) {
      dirty = false;
      const batch = await feed.store.read(feed.eventsQueue, { from, limit: 500 });
      if (batch.length > 0) {
        const more = res.write(batch.map((m) => `${JSON.stringify(eventJson(m))}\n`).join(""));
        from = (batch.at(-1)?.offset ?? from) + 1;
        // A reader that stops reading is waited for (or closes), not leaked.
        if (!more && open) await pause(60_000, (done) => res.once("drain", done));
        continue;
      }
      if (!dirty && open) await pause(15_000);
    }
  } finally {
    unsubscribe();
    res.end();
  }
}
