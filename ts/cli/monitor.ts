/**
 * `edgehub monitor`: device-to-cloud messages as they are stored, as `az iot hub
 * monitor-events` shows them, until interrupted. Reads `GET /messages/events/stream`
 * (ts/service/events.ts): a root's events queue, an edge hub's upstream queues, as
 * newline-delimited JSON kept open while messages arrive; when the stream is lost (the hub
 * restarted) it follows again from the cursor of the last message it printed.
 */
import { formatCursor, MAX_EVENT_STREAMS } from "../service/events.js";
import { type CommandIo, type CommandSpec, jsonLine, printable } from "./command.js";
import { withClient } from "./login.js";
import { type EventJson, ServiceApiError, type ServiceClient, StreamLostError } from "./service-client.js";

/** A body as text when it is UTF-8, else undefined. */
function utf8(body: Buffer): string | undefined {
  const text = body.toString("utf8");
  return Buffer.from(text, "utf8").equals(body) ? text : undefined;
}

/** One message as `--json` prints it. */
export function monitorJson(e: EventJson): Record<string, unknown> {
  const body = Buffer.from(e.body, "base64");
  const text = utf8(body);
  return {
    deviceId: e.deviceId,
    moduleId: e.moduleId ?? null,
    enqueuedTime: e.enqueuedTime,
    properties: e.properties,
    systemProperties: e.systemProperties,
    ...(text === undefined ? { body: e.body, bodyEncoding: "base64" } : { body: text }),
  };
}

/** One message as a line for people: time, sender, body, application properties. */
function monitorLine(e: EventJson): string {
  const body = Buffer.from(e.body, "base64");
  const text = utf8(body) ?? `base64:${e.body}`;
  const props = Object.entries(e.properties).map(([k, v]) => `${k}=${v}`);
  const who = e.moduleId ? `${e.deviceId}/${e.moduleId}` : e.deviceId;
  return `${printable(`${e.enqueuedTime} ${who} ${text}${props.length > 0 ? ` [${props.join(" ")}]` : ""}`)}\n`;
}

/** The first wait before following again after a lost stream; it doubles up to {@link MAX_BACKOFF_MS}. */
const FIRST_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 5000;

/** `queue:offset,…` (the stream's header) as a map; undefined when the hub sent none or garbage. */
export function cursorOf(text: string | undefined): Map<string, number> | undefined {
  if (text === undefined || text === "") return undefined;
  const cursor = new Map<string, number>();
  for (const part of text.split(",")) {
    const at = part.lastIndexOf(":");
    const offset = Number(part.slice(at + 1));
    if (at <= 0 || !Number.isSafeInteger(offset) || offset < 0) return undefined;
    cursor.set(part.slice(0, at), offset);
  }
  return cursor;
}

/** Waits `ms`, or less when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Whether following again may help: the stream was lost, or the hub was briefly unable (5xx). */
function worthRetrying(err: unknown): boolean {
  return err instanceof StreamLostError || (err instanceof ServiceApiError && err.status >= 500);
}

/**
 * Follows the hub until `signal` aborts, printing each message once through `print`. Once
 * a stream was open, a lost one is followed again from where it left off (the cursor of
 * the last message printed), with a backoff; before that, a failure is the command's.
 */
export async function followEvents(
  client: ServiceClient,
  print: (e: EventJson) => void,
  io: CommandIo,
  signal: AbortSignal,
): Promise<void> {
  let cursor: Map<string, number> | undefined;
  let backoff = FIRST_BACKOFF_MS;
  for (;;) {
    const from = cursor && cursor.size > 0 ? formatCursor(cursor) : "end";
    try {
      await client.follow(
        from,
        (e) => {
          const queue = e.queue ?? "";
          // A message at or past the cursor only: following again never prints one twice.
          if (cursor?.has(queue) && e.offset < (cursor.get(queue) ?? 0)) return;
          cursor?.set(queue, e.offset + 1);
          print(e);
        },
        signal,
        (header) => {
          // On stderr, so stdout holds messages only; a script waits for it before sending.
          io.err(
            cursor === undefined
              ? "monitoring device-to-cloud messages (Ctrl-C to stop)\n"
              : "monitoring again from where it left off\n",
          );
          cursor ??= cursorOf(header) ?? new Map();
          backoff = FIRST_BACKOFF_MS;
        },
      );
      return;
    } catch (err) {
      if (signal.aborted) return;
      if (cursor === undefined || !worthRetrying(err)) throw err;
      const reason = (err as Error).message.replace(/\s*\n\s*/g, " ");
      io.err(`edgehub: ${reason}; following again in ${backoff / 1000} s\n`);
      await sleep(backoff, signal);
      if (signal.aborted) return;
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

/** `edgehub monitor`. */
export const monitorCommand: CommandSpec = {
  name: "monitor",
  summary:
    "print device-to-cloud messages as the hub stores them, until interrupted (as az iot hub monitor-events)",
  options: [
    { name: "device", value: "<device-id>", help: "only this device's messages (and its modules')" },
    { name: "module", value: "<module-id>", help: "only this module's messages (with --device)" },
  ],
  login: true,
  notes:
    "One line per message: <enqueued time> <device>[/<module>] <body> [<property>=<value> …];\n" +
    "--json: one object per line {deviceId, moduleId, enqueuedTime, properties, systemProperties, body}.\n" +
    "A root hub: what it keeps as its events. An edge hub: what it holds for its parent, read as it is\n" +
    "stored, never taken from the forwarder (a message forwarded before monitor read it is not shown).\n" +
    "When the hub restarts, monitor follows again from where it left off (no message twice) until Ctrl-C.\n" +
    `A hub serves ${MAX_EVENT_STREAMS} monitors at once; one more is refused (429).`,
  async run(input, io) {
    const device = input.opt("device");
    const module = input.opt("module");
    const stop = new AbortController();
    const interrupted = () => stop.abort();
    process.once("SIGINT", interrupted);
    process.once("SIGTERM", interrupted);
    try {
      await withClient(input, (client) =>
        followEvents(
          client,
          (e) => {
            if (device !== undefined && e.deviceId !== device) return;
            if (module !== undefined && e.moduleId !== module) return;
            io.out(input.json ? jsonLine(monitorJson(e)) : monitorLine(e));
          },
          io,
          stop.signal,
        ),
      );
    } finally {
      process.off("SIGINT", interrupted);
      process.off("SIGTERM", interrupted);
    }
  },
};
