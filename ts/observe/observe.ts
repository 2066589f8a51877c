/**
 * Watching a hub, wired in one call from the composition root: the status board (always),
 * and with config `metrics` on, the Prometheus metrics and the operators' listener.
 */
import type { HubConfig } from "../config/config.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { Logger } from "../log.js";
import { DEAD_LETTER_QUEUE, EVENTS_QUEUE } from "../vocabulary.js";
import { HubMetrics } from "./metrics.js";
import { ObserveServer, type Readiness } from "./server.js";
import { type BoardSources, StatusBoard } from "./status.js";

/** What watching reads beyond the board's sources. */
export interface ObserveSources extends Omit<BoardSources, "isBacklog"> {
  openConnections(): number;
  /** Whether the device-facing listeners are up and the hub is not closing. */
  serving(): boolean;
  /** The event loop's delay, 99th percentile of the last window, in ms. */
  eventLoopDelayP99Ms(): number;
  /** The full status (`GET /edge/status`'s body). */
  status(): Promise<Record<string, unknown>>;
}

/** The watching parts of one hub. */
export interface Observing {
  board: StatusBoard;
  /** Absent with `metrics: false`. */
  metrics: HubMetrics | undefined;
  /** Absent with `metrics: false`, or when the default port was taken. */
  server: ObserveServer | undefined;
  close(): Promise<void>;
}

/**
 * Starts the board, and the metrics and their listener unless `config.metrics` is false.
 * Fails when a configured port cannot be bound; the default one taken is logged and skipped.
 */
export async function observe(config: HubConfig, sources: ObserveSources, log: Logger): Promise<Observing> {
  // The backlog is what waits for a consumer: not the root's events log, not dead letters.
  const isBacklog = (q: string) => q !== EVENTS_QUEUE && q !== DEAD_LETTER_QUEUE;
  const board = new StatusBoard({ ...sources, isBacklog });
  const { store, link } = sources;
  const close = async (server: ObserveServer | undefined) => {
    board.close();
    store.onCommit = undefined;
    await server?.close();
  };
  if (config.metrics === false)
    return { board, metrics: undefined, server: undefined, close: () => close(undefined) };
  const metrics = new HubMetrics({
    stats: () => store.statsNow(),
    connectedClients: () => sources.clients().count,
    openConnections: sources.openConnections,
    linkUp: () => link?.online,
    eventLoopDelayP99Ms: sources.eventLoopDelayP99Ms,
  });
  store.onCommit = (seconds) => metrics.committed(seconds);
  const readiness = (): Readiness => {
    const storeOpen = !store.closed;
    const serving = sources.serving();
    return {
      ready: storeOpen && serving,
      store: storeOpen ? "open" : "closed",
      listeners: serving ? "up" : "down",
      link: board.link.state,
    };
  };
  const { host, port, required } = config.metrics;
  let server: ObserveServer | undefined;
  try {
    server = await ObserveServer.listen(
      {
        metrics,
        readiness,
        statusJson: async () => ({ status: await sources.status(), samples: board.samples() }),
      },
      host,
      port,
      [config.hostname],
    );
    log.log("info", "metrics-listening", { host, port: server.port });
  } catch (err) {
    if (required || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") {
      await close(undefined);
      throw new EdgeHubError(
        ErrorCodes.CONFIG_INVALID,
        `config key metrics: cannot listen on ${host}:${port} (${(err as Error).message}); choose another metrics.port or set metrics: false`,
        { cause: err },
      );
    }
    log.log("warn", "metrics-not-listening", {
      host,
      port,
      reason: `${(err as Error).message}; set metrics.port (0: any free port) or metrics: false`,
    });
  }
  return { board, metrics, server, close: () => close(server) };
}
