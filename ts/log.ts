/**
 * A small structured logger: one JSON line per event. Callers pass fields, never secrets
 * (tokens, keys and passwords are not logged anywhere in edgehub).
 */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Where edgehub reports what happens. */
export interface Logger {
  log(level: LogLevel, event: string, fields?: Record<string, unknown>): void;
}

const ORDER: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** JSON lines on stderr at `level` and above. */
export function consoleLogger(level: LogLevel = "info"): Logger {
  return {
    log(l, event, fields) {
      if (ORDER[l] < ORDER[level]) return;
      process.stderr.write(
        `${JSON.stringify({ time: new Date().toISOString(), level: l, event, ...fields })}\n`,
      );
    },
  };
}

/** Discards everything (embedding callers that log elsewhere). */
export const silentLogger: Logger = { log() {} };
