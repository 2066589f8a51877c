/**
 * A raw HTTPS parent over real TLS, for the scope call: strict where a real parent is
 * (the call must be the scope call of the configured edge, with a SAS token of that edge's
 * `$edgeHub` signed by {@link RawHttpsParent.key} and not expired, else 401), and answers with exactly what a test
 * writes (bad records, endless pages, looping or foreign links, huge bodies). For what a
 * real root hub never sends; the normal parent in tests is a real root hub.
 */
import { randomBytes } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import { afterEach } from "vitest";
import { parseSasToken, signedByAny } from "../../ts/auth/sas.js";
import { devTls } from "../../ts/certs/dev-ca.js";
import { scopePath } from "../../ts/service/scope.js";
import { tempDir } from "./fixtures.js";

const parents = new Set<RawHttpsParent>();
afterEach(async () => {
  await Promise.all([...parents].map((p) => p.close()));
});

/** What a test answers the n-th scope call with (n from 0). */
export type ScopeAnswer = (n: number, url: string, res: ServerResponse) => void;

export class RawHttpsParent {
  readonly #server: https.Server;
  readonly #sockets = new Set<import("node:net").Socket>();
  /** The URL of every authorized scope call, in order. */
  readonly calls: string[] = [];
  /** Calls refused (bad path or token), with the reason. */
  readonly refused: string[] = [];
  readonly ca: string;
  /** The edge device this parent answers, and its `$edgeHub` key (random, base64 of 32 bytes). */
  readonly edgeId: string;
  readonly key = randomBytes(32).toString("base64");
  answer: ScopeAnswer = (_n, _url, res) => res.writeHead(404).end();

  private constructor(server: https.Server, ca: string, edgeId: string) {
    this.#server = server;
    this.ca = ca;
    this.edgeId = edgeId;
  }

  /** A parent on a free port of 127.0.0.1, certificate for `localhost`. */
  static async start(edgeId = "edge1"): Promise<RawHttpsParent> {
    const material = await devTls(await tempDir(), "localhost");
    const server = https.createServer({ cert: material.cert, key: material.key });
    const parent = new RawHttpsParent(server, material.ca, edgeId);
    server.on("request", (req, res) => parent.#serve(req, res));
    server.on("secureConnection", (s) => {
      parent.#sockets.add(s);
      s.on("close", () => parent.#sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    parents.add(parent);
    return parent;
  }

  get port(): number {
    return (this.#server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    parents.delete(this);
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #serve(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? "";
    const refusal = this.#refusal(req, url);
    if (refusal !== undefined) {
      this.refused.push(`${refusal}: ${url}`);
      res.writeHead(401).end();
      return;
    }
    const n = this.calls.length;
    this.calls.push(url);
    this.answer(n, url, res);
  }

  /** Why a parent would refuse this call; undefined when it is the edge's own scope call. */
  #refusal(req: IncomingMessage, url: string): string | undefined {
    const [path = "", query] = url.split("?");
    // Paths compared decoded, as an HTTP server routes them.
    if (req.method !== "GET" || query === undefined) return "not the scope call";
    try {
      if (decodeURIComponent(path) !== decodeURIComponent(scopePath(this.edgeId)))
        return "not the scope call";
      const token = parseSasToken(req.headers.authorization ?? "");
      // The edge's `$edgeHub` token, as Microsoft's edge hub signs its scope calls.
      if (token.resource !== `localhost/devices/${this.edgeId}/modules/$edgeHub`)
        return "token of another identity";
      if (token.expiry * 1000 < Date.now()) return "expired token";
      if (!signedByAny(token, [this.key])) return "bad signature";
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  }
}
