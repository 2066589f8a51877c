/**
 * `edgehub monitor`: device-to-cloud messages as they are stored, as `az iot hub
 * monitor-events` shows them, until interrupted. Reads the root hub's events queue through
 * `GET /messages/events/stream?from=end` (ts/service/events.ts): newline-delimited JSON,
 * kept open while messages arrive.
 */
import { type CommandSpec, jsonLine, printable } from "./command.js";
import { withClient } from "./login.js";
import type { EventJson } from "./service-client.js";

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
    "Shows what a root hub stores as its events; an edge hub forwards them to its parent instead.",
  async run(input, io) {
    const device = input.opt("device");
    const module = input.opt("module");
    const stop = new AbortController();
    const interrupted = () => stop.abort();
    process.once("SIGINT", interrupted);
    process.once("SIGTERM", interrupted);
    try {
      await withClient(input, (client) =>
        client.follow(
          "end",
          (e) => {
            if (device !== undefined && e.deviceId !== device) return;
            if (module !== undefined && e.moduleId !== module) return;
            io.out(input.json ? jsonLine(monitorJson(e)) : monitorLine(e));
          },
          stop.signal,
          // On stderr, so stdout holds messages only; a script waits for it before sending.
          () => io.err("monitoring device-to-cloud messages (Ctrl-C to stop)\n"),
        ),
      );
    } finally {
      process.off("SIGINT", interrupted);
      process.off("SIGTERM", interrupted);
    }
  },
};
