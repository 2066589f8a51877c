/**
 * Reading stored messages over the service API: one page of a queue (`from`, `limit`),
 * and the device-to-cloud queues as a stream of newline-delimited JSON kept open while
 * messages are stored (what `edgehub monitor` follows). A root follows its events queue;
 * an edge hub its upstream queues, read-only: reading never acknowledges, so the
 * forwarder's checkpoint is the forwarder's alone.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { MessageStore, StoredMessage } from "../store/index.js";
import { type Cursor, type EventFeed, Follower } from "./follower.js";
import { ApiError } from "./http.js";
import { eventJson } from "./shapes.js";

export type { Cursor, EventFeed } from "./follower.js";

/** Streams open at once at most: each holds a socket, a reader and a store cursor. */
export const MAX_EVENT_STREAMS = 16;
/** The header of a stream's answer naming where it starts: its {@link formatCursor} text. */
export const CURSOR_HEADER = "x-edgehub-cursor";
/** An idle stream writes an empty line this often, so a reader can tell a dead hub from a quiet one. */
export const HEARTBEAT_MS = 15_000;
/** A `from` longer than this is refused before it is split (eleven queues need ~200 characters). */
const MAX_FROM_LENGTH = 2048;

/** `queue:offset,…`: a cursor as the stream's header gives it and `from=` takes it back. */
export function formatCursor(cursor: Cursor): string {
  return [...cursor].map(([q, o]) => `${q}:${o}`).join(",");
}

/**
 * A cursor from `from`: `end` (only what is stored from now on, as `az iot hub
 * monitor-events` starts), an offset (every followed queue from it), or `queue:offset,…`
 * (where a reader that lost its stream left off; queues it does not name start at 0).
 * Queues other than `followed` are refused: the text is the caller's.
 */
export function parseCursor(from: string, followed: readonly string[], tails: Cursor): Cursor {
  const bad = (why: string) => new ApiError(400, "ArgumentInvalid", `from: ${why}`);
  const offset = (text: string) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw bad("offsets are integers >= 0");
    return n;
  };
  if (from === "end") return new Map(followed.map((q) => [q, tails.get(q) ?? 0]));
  if (from.length > MAX_FROM_LENGTH) throw bad(`longer than ${MAX_FROM_LENGTH} characters`);
  if (!from.includes(":")) {
    const n = offset(from);
    return new Map(followed.map((q) => [q, n]));
  }
  const cursor: Cursor = new Map(followed.map((q) => [q, 0]));
  for (const part of from.split(",")) {
    const at = part.lastIndexOf(":");
    const queue = part.slice(0, at);
    if (at < 0 || !cursor.has(queue))
      throw bad(`${JSON.stringify(queue)} is not a queue this stream follows`);
    cursor.set(queue, offset(part.slice(at + 1)));
  }
  return cursor;
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
 * `GET /messages/events/stream?from=<end|offset|cursor>`: the followed queues as
 * newline-delimited JSON, one message per line (with its `queue` and `offset`), kept open
 * and fed as messages are stored, until the client leaves. At most {@link MAX_EVENT_STREAMS}
 * at once; one more is answered 429.
 */
export class EventStreams {
  readonly #feed: EventFeed;
  readonly #max: number;
  #open = 0;

  constructor(feed: EventFeed, max = MAX_EVENT_STREAMS) {
    this.#feed = feed;
    this.#max = max;
  }

  /** Streams open now. */
  get open(): number {
    return this.#open;
  }

  async serve(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    // Counted before the first await: two requests arriving together cannot both take the last place.
    // Refused as IoT Hub refuses past a throttle: 429 `ThrottlingException` (its error 429001,
    // MicrosoftDocs/azure-docs articles/iot-hub/iot-hub-troubleshoot-error-429001-throttlingexception.md).
    if (this.#open >= this.#max)
      throw new ApiError(
        429,
        "ThrottlingException",
        `at most ${this.#max} event streams (edgehub monitor) at once; end one and try again`,
      );
    this.#open++;
    try {
      await this.#stream(req, res, url);
    } finally {
      this.#open--;
    }
  }

  async #stream(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const feed = this.#feed;
    const tails: Cursor = new Map();
    const from = url.searchParams.get("from") ?? "0";
    if (from === "end") for (const q of (await feed.store.stats()).queues) tails.set(q.name, q.tail);
    const cursor = parseCursor(from, feed.followedQueues, tails);
    res.writeHead(200, {
      "content-type": "application/x-ndjson; charset=utf-8",
      "cache-control": "no-store",
      [CURSOR_HEADER]: formatCursor(cursor),
    });
    // The reader learns it is following now, not with the first message.
    res.flushHeaders();
    const follower = new Follower(feed, cursor);
    let open = true;
    const closed = () => {
      open = false;
      follower.wake();
    };
    req.on("close", closed);
    res.on("close", closed);
    try {
      while (open) {
        const batches = await follower.next(500);
        for (const { queue, messages } of batches) {
          if (!open) break;
          const lines = messages.map((m) => JSON.stringify({ ...eventJson(m), queue }));
          // A reader that stops reading is waited for, not buffered for: a minute, then dropped.
          if (!res.write(`${lines.join("\n")}\n`) && open && !(await drainedOrClosed(res, 60_000)))
            res.destroy();
        }
        if (batches.length > 0 || !open) continue;
        if (!(await follower.wait(HEARTBEAT_MS)) && open) res.write("\n");
      }
    } finally {
      follower.close();
      res.end();
    }
  }
}

/** Resolves true once `res` drained or closed, false after `ms`. */
function drainedOrClosed(res: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const end = (done: boolean) => {
      clearTimeout(timer);
      res.off("drain", ok);
      res.off("close", ok);
      resolve(done);
    };
    const ok = () => end(true);
    const timer = setTimeout(() => end(false), ms);
    res.once("drain", ok);
    res.once("close", ok);
  });
}
