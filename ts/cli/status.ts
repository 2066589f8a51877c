/**
 * `edgehub status [--watch] [--json]`: the running hub's parent link, clients, backlog,
 * drain rate and ETA, quota and counters, read from its service API (`GET /edge/status`,
 * built by ts/observe/status.ts). `--watch` redraws every second, with bars on a terminal
 * and one plain line per second otherwise, until interrupted.
 */
import type { WatchStatus } from "../observe/status.js";
import type { CommandSpec } from "./command.js";
import { withClient } from "./login.js";
import type { ServiceClient } from "./service-client.js";

/** Where the command writes, and whether that is a terminal. */
interface StatusOutput {
  out(text: string): void;
  /** Redraw in place with bars (a TTY); plain lines otherwise. */
  tty: boolean;
  /** Columns of the terminal (default 80). */
  columns?: number;
  /** Ends `--watch` (SIGINT in the command; a test's abort). */
  signal?: AbortSignal;
}

/** What the status shows, with the role and parent the hub adds. */
type Status = WatchStatus & { role?: string; parent?: { hostname?: string } | null };

/** `edgehub status`. */
export const statusCommand: CommandSpec = {
  name: "status",
  summary:
    "the hub's parent link and since when, clients, backlog per queue and per device, drain rate and ETA, quota, counters",
  options: [
    { name: "watch", short: "w", help: "redraw every second until interrupted (bars on a terminal)" },
  ],
  login: true,
  notes:
    "Backlog per queue and per device: messages, bytes, oldest age; counters: expired, dropped, dead-lettered.\n" +
    "--json: the status as JSON (with --watch: one line per second).",
  async run(input, io) {
    const stop = new AbortController();
    const onSignal = () => stop.abort();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      await withClient(input, (client) =>
        watchStatus(client, input.json, input.flag("watch"), {
          out: (text) => io.out(text),
          tty: process.stdout.isTTY === true,
          columns: process.stdout.columns ?? 80,
          signal: stop.signal,
        }),
      );
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  },
};

/** Shows the status once, or every second until `output.signal` aborts. */
async function watchStatus(
  client: ServiceClient,
  json: boolean,
  watch: boolean,
  output: StatusOutput,
): Promise<void> {
  const show = (s: Status) => {
    if (json) output.out(`${JSON.stringify(s)}\n`);
    else if (watch && output.tty) output.out(`\x1b[H\x1b[2J${renderStatus(s, output.columns ?? 80)}`);
    else if (watch) output.out(`${statusLine(s)}\n`);
    else output.out(renderStatus(s, output.columns ?? 80));
  };
  show(statusOf(await client.edgeStatus()));
  if (!watch) return;
  const signal = output.signal;
  while (!signal?.aborted) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      signal?.addEventListener("abort", () => {
        clearTimeout(t);
        resolve();
      });
    });
    if (!signal?.aborted) show(statusOf(await client.edgeStatus()));
  }
}

/** The reply checked for the fields the command reads (a hub without them is older than this command). */
function statusOf(body: unknown): Status {
  const s = body as Partial<Status> | null;
  if (
    typeof s?.link?.state !== "string" ||
    typeof s.backlog?.messages !== "number" ||
    !Array.isArray(s.backlog.queues) ||
    typeof s.drain?.outPerSec !== "number" ||
    typeof s.quota?.usedBytes !== "number" ||
    typeof s.counters?.deadLettered !== "number" ||
    !Array.isArray(s.clients?.ids)
  )
    throw new Error("the hub's GET /edge/status has no watching view: is it an older edgehub?");
  return s as Status;
}

/** Control characters out of text from the hub (ids, reasons) before it reaches a terminal. */
function clean(text: unknown): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: removing them is the point
  return String(text).replace(/[\u0000-\u001f\u007f-\u009f]/g, "?");
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 2 ** 20) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 2 ** 30) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  return `${(n / 2 ** 30).toFixed(2)} GiB`;
}

function age(ms: number | null): string {
  if (ms === null) return "-";
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/** `[#####.....]` of `part / whole`, `width` cells inside. */
function bar(part: number, whole: number, width: number): string {
  const filled = whole > 0 ? Math.min(width, Math.round((part / whole) * width)) : 0;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}

function eta(s: Status): string {
  const e = s.drain.etaSecs;
  return e === null ? "not shrinking" : e === 0 ? "empty" : `empty in ~${age(e * 1000)}`;
}

/** One line a second for `--watch` off a terminal (a log file, a pipe). */
export function statusLine(s: Status): string {
  return [
    s.at,
    `link=${s.link.state}`,
    `clients=${s.clients.connected}`,
    `backlog=${s.backlog.messages}`,
    `bytes=${s.backlog.bytes}`,
    `out/s=${s.drain.outPerSec}`,
    `in/s=${s.drain.inPerSec}`,
    `eta=${s.drain.etaSecs ?? "-"}`,
    `quota=${s.quota.usedPercent}%`,
    `deadLettered=${s.counters.deadLettered}`,
  ].join(" ");
}

/** The status as a screen of text; the bars fit `columns`. */
export function renderStatus(s: Status, columns: number): string {
  const barWidth = Math.max(10, Math.min(40, columns - 70));
  const since = s.link.since
    ? ` since ${s.link.since} (${age(Date.parse(s.at) - Date.parse(s.link.since))})`
    : "";
  const parent = s.parent?.hostname ? ` to ${clean(s.parent.hostname)}` : "";
  const lines = [
    `edgehub ${clean(s.role ?? "")} hub, status at ${s.at}`,
    `parent link  ${s.link.state}${parent}${since}`,
    `clients      ${s.clients.connected} connected${s.clients.ids.length ? `: ${s.clients.ids.map(clean).join(", ")}` : ""}${s.clients.ids.length < s.clients.connected ? ", …" : ""}`,
    `backlog      ${s.backlog.messages} messages, ${bytes(s.backlog.bytes)}, oldest ${age(s.backlog.oldestAgeMs)}`,
  ];
  const largest = s.backlog.queues[0]?.bytes ?? 0;
  for (const q of s.backlog.queues)
    lines.push(
      `  ${clean(q.queue).padEnd(28)} ${bar(q.bytes, largest, barWidth)} ${q.messages} msgs, ${bytes(q.bytes)}, oldest ${age(q.oldestAgeMs)}`,
    );
  if (s.backlog.moreQueues > 0) lines.push(`  … and ${s.backlog.moreQueues} smaller queues`);
  if (s.backlog.devices.length > 0)
    lines.push("  per device (to: waiting for it; from: it sent, still stored)");
  for (const d of s.backlog.devices)
    lines.push(
      `  ${`${d.direction} ${clean(d.id)}`.padEnd(28)} ${d.messages === null ? "" : `${d.messages} msgs, `}${bytes(d.bytes)}${d.oldestAgeMs === null ? "" : `, oldest ${age(d.oldestAgeMs)}`}`,
    );
  lines.push(
    `drain        ${s.drain.outPerSec} msg/s out, ${s.drain.inPerSec} msg/s in (last ${s.drain.windowSecs} s); ${eta(s)}`,
    `quota        ${bar(s.quota.usedBytes, s.quota.maxSizeBytes, barWidth)} ${s.quota.usedPercent} % of ${bytes(s.quota.maxSizeBytes)}`,
    `counters     expired ${s.counters.expired}, dropped ${s.counters.dropped}, dead-lettered ${s.counters.deadLettered}`,
  );
  for (const d of s.deadLetters)
    lines.push(`  dead letter ${d.at} from ${clean(d.queue)}: ${clean(d.reason)} (${d.bodyBytes} bytes)`);
  return `${lines.join("\n")}\n`;
}
