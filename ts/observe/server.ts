/**
 * The operators' listener (config `metrics`, 127.0.0.1:9600 by default), apart from the
 * device-facing ones: `/metrics` (Prometheus), `/healthz` (the process answers),
 * `/readyz` (store open and listeners up; 503 otherwise), the status page `/` and its
 * `/status.json`. It carries no credential, so it binds to loopback by default and
 * shows no key or token (docs/security.md); a Host check keeps pages of other sites
 * from reading it through DNS rebinding.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { isIP } from "node:net";
import type { HubMetrics } from "./metrics.js";
import { STATUS_PAGE } from "./page.js";

/** Readiness as `/readyz` reports it. */
export interface Readiness {
  ready: boolean;
  store: "open" | "closed";
  listeners: "up" | "down";
  /** The parent link (`none` on a root). */
  link: string;
}

/** What the listener serves. */
export interface ObserveHandlers {
  metrics: HubMetrics;
  readiness(): Readiness;
  /** The status and the backlog samples, for the page. */
  statusJson(): Promise<unknown>;
}

/** Connections the listener keeps at most (a scraper, a probe, a browser or two). */
const MAX_CONNECTIONS = 32;

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "cache-control": "no-store",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};
const PAGE_POLICY =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function send(res: http.ServerResponse, status: number, type: string, body: string, extra = {}): void {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    "content-type": type,
    "content-length": Buffer.byteLength(body),
    ...extra,
  });
  res.end(res.req.method === "HEAD" ? undefined : body);
}

/** A Host header naming this listener: an IP literal, `localhost`, or one of `names` (lower case). */
function hostAllowed(header: string | undefined, names: readonly string[]): boolean {
  if (header === undefined) return false;
  const host = (
    header.startsWith("[") ? header.slice(1, header.indexOf("]")) : header.replace(/:\d+$/, "")
  ).toLowerCase();
  return isIP(host) !== 0 || host === "localhost" || names.includes(host);
}

/** The operators' HTTP listener of one hub. */
export class ObserveServer {
  readonly #server: http.Server;
  readonly #handlers: ObserveHandlers;
  readonly #names: string[];

  private constructor(server: http.Server, handlers: ObserveHandlers, names: string[]) {
    this.#server = server;
    this.#handlers = handlers;
    this.#names = names;
  }

  /**
   * Listens on `host:port` (0: a free port); rejects when it cannot bind. `names`: host
   * names requests may carry besides IP literals and `localhost` (the hub's hostname).
   */
  static async listen(
    handlers: ObserveHandlers,
    host: string,
    port: number,
    names: readonly string[] = [],
  ): Promise<ObserveServer> {
    const server = http.createServer({ headersTimeout: 10_000, requestTimeout: 15_000 });
    server.maxConnections = MAX_CONNECTIONS;
    server.keepAliveTimeout = 5000;
    const o = new ObserveServer(
      server,
      handlers,
      [host, ...names].map((n) => n.toLowerCase()),
    );
    server.on("request", (req, res) => o.#handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, () => {
        server.off("error", reject);
        resolve();
      });
    });
    return o;
  }

  /** The port bound. */
  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** Stops listening and closes every connection. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  #handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.#route(req, res).catch((err: unknown) => {
      if (res.headersSent) res.destroy();
      else send(res, 500, "text/plain; charset=utf-8", `internal error: ${(err as Error).message}\n`);
    });
  }

  async #route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD")
      return send(res, 405, "text/plain; charset=utf-8", "only GET and HEAD\n", { allow: "GET, HEAD" });
    if (!hostAllowed(req.headers.host, this.#names))
      return send(res, 421, "text/plain; charset=utf-8", "unknown Host: use the listener's address\n");
    const path = (req.url ?? "/").split("?")[0];
    const h = this.#handlers;
    switch (path) {
      case "/metrics": {
        const m = await h.metrics.render();
        return send(res, 200, m.contentType, m.body);
      }
      case "/healthz":
        return send(res, 200, "text/plain; charset=utf-8", "ok\n");
      case "/readyz": {
        const r = h.readiness();
        return send(res, r.ready ? 200 : 503, "application/json", `${JSON.stringify(r)}\n`);
      }
      case "/status.json":
        return send(res, 200, "application/json", JSON.stringify(await h.statusJson()));
      case "/":
        return send(res, 200, "text/html; charset=utf-8", STATUS_PAGE, {
          "content-security-policy": PAGE_POLICY,
        });
      default:
        return send(
          res,
          404,
          "text/plain; charset=utf-8",
          "not found: /metrics, /healthz, /readyz, / (status page)\n",
        );
    }
  }
}
