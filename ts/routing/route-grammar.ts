/**
 * IoT Edge's route grammar: `FROM <source> [WHERE <condition>] INTO <sink>`.
 *
 * Sources: `/*`, `/messages/*`, `/messages/modules/*`, `/messages/modules/{m}/*`,
 * `/messages/modules/{m}/outputs/*`, `/messages/modules/{m}/outputs/{o}`,
 * `/twinChangeNotifications`. Sinks: `$upstream`,
 * `BrokeredEndpoint("/modules/{m}/inputs/{i}")` and, beyond IoT Edge,
 * `DeviceEndpoint("/devices/{d}")`. Keywords are case-insensitive.
 *
 * A route that does not parse is refused with the position (1-based column) and the
 * reason, as {@link RouteSyntaxError}.
 */
import { type Condition, parseCondition } from "./condition.js";
import { RouteSyntaxError } from "./syntax.js";

export { RouteSyntaxError } from "./syntax.js";

/** Where a route takes messages from. */
export type RouteSource =
  | { kind: "all" }
  | { kind: "twinChangeNotifications" }
  | { kind: "messages"; scope: "all" | "devices" | "modules"; moduleId?: string; output?: string };

/** Where a route puts them. */
export type RouteSink =
  | { kind: "upstream" }
  | { kind: "moduleInput"; moduleId: string; input: string }
  | { kind: "device"; deviceId: string };

/** A parsed route. */
export interface Route {
  source: RouteSource;
  condition: Condition | undefined;
  sink: RouteSink;
}

const SOURCE =
  /^\/(\*|twinChangeNotifications|messages\/\*|messages\/modules\/\*|messages\/modules\/([^/\s*]+)\/\*|messages\/modules\/([^/\s*]+)\/outputs\/\*|messages\/modules\/([^/\s*]+)\/outputs\/([^/\s*]+))$/;

function source(text: string, at: number): RouteSource {
  const m = SOURCE.exec(text);
  if (!m) {
    throw new RouteSyntaxError(
      at,
      `unknown source ${JSON.stringify(text)}: expected /messages/*, /messages/modules/{m}/*, /messages/modules/{m}/outputs/{o} (or *), /twinChangeNotifications or /*`,
    );
  }
  const [, whole, modAll, modOutputs, modOne, output] = m;
  if (whole === "*") return { kind: "all" };
  if (whole === "twinChangeNotifications") return { kind: "twinChangeNotifications" };
  if (whole === "messages/*") return { kind: "messages", scope: "all" };
  if (whole === "messages/modules/*") return { kind: "messages", scope: "modules" };
  if (modAll) return { kind: "messages", scope: "modules", moduleId: modAll };
  if (modOutputs) return { kind: "messages", scope: "modules", moduleId: modOutputs, output: "*" };
  return { kind: "messages", scope: "modules", moduleId: modOne as string, output: output as string };
}

const BROKERED = /^BrokeredEndpoint\(\s*"\/modules\/([^/"]+)\/inputs\/([^/"]+)"\s*\)$/i;
const DEVICE = /^DeviceEndpoint\(\s*"\/devices\/([^/"]+)"\s*\)$/i;

function sink(text: string, at: number): RouteSink {
  if (text.toLowerCase() === "$upstream") return { kind: "upstream" };
  const b = BROKERED.exec(text);
  if (b) return { kind: "moduleInput", moduleId: b[1] as string, input: b[2] as string };
  const d = DEVICE.exec(text);
  if (d) return { kind: "device", deviceId: d[1] as string };
  throw new RouteSyntaxError(
    at,
    `unknown sink ${JSON.stringify(text)}: expected $upstream, BrokeredEndpoint("/modules/{m}/inputs/{i}") or DeviceEndpoint("/devices/{d}")`,
  );
}

/** Index of the keyword `word` as a whole word outside quotes, from `from`; -1 if none. */
function keyword(text: string, word: string, from: number): number {
  const re = new RegExp(`\\b${word}\\b`, "iy");
  let quote: string | undefined;
  let quoteAt = 0;
  for (let i = from; i < text.length; i++) {
    const c = text[i] as string;
    if (quote) {
      if (c === "\\") i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === "'" || c === '"') {
      quote = c;
      quoteAt = i;
      continue;
    }
    re.lastIndex = i;
    if ((i === 0 || /\s/.test(text[i - 1] as string)) && re.test(text)) return i;
  }
  if (quote) throw new RouteSyntaxError(quoteAt + 1, "unterminated string");
  return -1;
}

/** Parses one route; throws {@link RouteSyntaxError} with the column and the reason. */
export function parseRoute(text: string): Route {
  if (typeof text !== "string") throw new RouteSyntaxError(1, "a route must be a string");
  const from = keyword(text, "FROM", 0);
  if (from < 0 || text.slice(0, from).trim() !== "")
    throw new RouteSyntaxError(1, "a route starts with FROM");
  const into = keyword(text, "INTO", from + 4);
  if (into < 0) throw new RouteSyntaxError(text.length + 1, "INTO <sink> is missing");
  const where = keyword(text, "WHERE", from + 4);
  const srcEnd = where >= 0 && where < into ? where : into;
  const srcText = text.slice(from + 4, srcEnd);
  const srcAt = from + 4 + (srcText.length - srcText.trimStart().length);
  if (srcText.trim() === "") throw new RouteSyntaxError(srcAt + 1, "the source after FROM is missing");
  const src = source(srcText.trim(), srcAt + 1);
  let condition: Condition | undefined;
  if (where >= 0 && where < into) {
    const condText = text.slice(where + 5, into);
    const condAt = where + 5 + (condText.length - condText.trimStart().length);
    if (condText.trim() === "")
      throw new RouteSyntaxError(condAt + 1, "the condition after WHERE is missing");
    condition = parseCondition(condText, where + 5);
  }
  const sinkText = text.slice(into + 4);
  const sinkAt = into + 4 + (sinkText.length - sinkText.trimStart().length);
  if (sinkText.trim() === "") throw new RouteSyntaxError(sinkAt + 1, "the sink after INTO is missing");
  return { source: src, condition, sink: sink(sinkText.trim(), sinkAt + 1) };
}
