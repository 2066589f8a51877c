/**
 * Where an Event Hubs reader starts: its receiver's source filter
 * `apache.org:selector-filter:string`, in the one grammar @azure/event-hubs writes
 * (`getEventPositionFilter` in its `eventPosition.js`, 6.0.4; the names from
 * @azure/core-amqp `Constants`):
 *
 *   amqp.annotation.x-opt-offset > '-1'            earliest
 *   amqp.annotation.x-opt-offset > '@latest'       what is stored from now on
 *   amqp.annotation.x-opt-offset >[=] '{n}'
 *   amqp.annotation.x-opt-sequence-number >[=] '{n}'
 *   amqp.annotation.x-opt-enqueued-time >[=] '{ms since the epoch}'
 *
 * Anything else is refused: a reader that meant something else must not get events from
 * a place it did not ask for. No filter reads from the earliest event, as Event Hubs does.
 */

/** The filter's name in a source's filter set. */
export const SELECTOR_FILTER = "apache.org:selector-filter:string";

/** A filter's text is never longer than this (the longest the client writes is ~70). */
const MAX_FILTER_LENGTH = 256;

/** Where a reader starts. */
export type StartPosition =
  /** At this offset (sequence numbers are offsets here). */
  | { kind: "offset"; offset: number }
  /** After the last event stored when the link attached. */
  | { kind: "latest" }
  /** At the first event enqueued after `afterMs` (or at it, when `inclusive`). */
  | { kind: "time"; afterMs: number; inclusive: boolean };

/** A filter the endpoint does not take; its text says why. */
export class BadFilter extends Error {}

const GRAMMAR =
  /^amqp\.annotation\.x-opt-(offset|sequence-number|enqueued-time) (>=|>) '(-1|@latest|[0-9]{1,16})'$/;

/** The start a source's filter set asks for; throws {@link BadFilter}. */
export function startOf(filters: unknown): StartPosition {
  if (filters === undefined || filters === null) return { kind: "offset", offset: 0 };
  if (typeof filters !== "object") throw new BadFilter("the source's filter set is not a map");
  const names = Object.keys(filters);
  const others = names.filter((n) => n !== SELECTOR_FILTER);
  if (others.length > 0) throw new BadFilter(`filter ${JSON.stringify(others[0])} is not supported`);
  if (names.length === 0) return { kind: "offset", offset: 0 };
  // rhea hands the described value over as its value; a described object as it decoded it.
  const raw: unknown = (filters as Record<string, unknown>)[SELECTOR_FILTER];
  const text = typeof raw === "string" ? raw : (raw as { value?: unknown } | null | undefined)?.value;
  if (typeof text !== "string") throw new BadFilter(`${SELECTOR_FILTER} must be a string`);
  return parseSelector(text);
}

/** The start one selector text asks for; throws {@link BadFilter}. */
export function parseSelector(text: string): StartPosition {
  const m = text.length <= MAX_FILTER_LENGTH ? GRAMMAR.exec(text.trim()) : null;
  if (!m)
    throw new BadFilter(
      `the selector ${JSON.stringify(text.slice(0, 80))} is not one of amqp.annotation.x-opt-offset, ` +
        "x-opt-sequence-number or x-opt-enqueued-time followed by > or >= and a quoted number",
    );
  const [, field, op, value] = m as unknown as [string, string, string, string];
  const inclusive = op === ">=";
  if (value === "@latest") {
    if (field !== "offset" || inclusive) throw new BadFilter("@latest goes with x-opt-offset >");
    return { kind: "latest" };
  }
  const n = Number(value);
  if (field === "enqueued-time") {
    if (n < 0) throw new BadFilter("an enqueued time is milliseconds since the epoch, >= 0");
    return { kind: "time", afterMs: n, inclusive };
  }
  // `> n` starts after n; `> -1` (the client's earliest) at 0; `>= -1` means the same.
  const offset = n < 0 ? 0 : inclusive ? n : n + 1;
  if (!Number.isSafeInteger(offset)) throw new BadFilter(`${value} is past the largest offset`);
  return { kind: "offset", offset };
}
