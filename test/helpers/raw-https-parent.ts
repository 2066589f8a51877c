/**
 * A raw HTTPS parent over real TLS, for the scope calls: strict where a real parent is and
 * about the wire form Microsoft's edge hub sends, read from the fixture
 * (test/fixtures/upstream-forms/scope.json: `nested.post.path`, `nested.post.headers`,
 * `nested.post.body`, `legacy.get`). A call off that form, or without a SAS token of the
 * configured edge's `$edgeHub` signed by its key and not expired, is refused 401 and recorded with why.
 * It answers with exactly what a test writes (bad records, endless pages, looping links,
 * huge bodies, 429s). For what a real root hub never sends; the normal parent in tests is
 * a real root hub. With {@link RawHttpsParent.deviceKey} set it also serves the module
 * identity read of the edge's `$edgeHub` (identity.json `module-identity.get`) to the edge
 * device's own token, and every request it gets is kept as it came ({@link RawHttpsParent.requests}).
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import https from "node:https";
import path from "node:path";
import { afterEach } from "vitest";
import { parseSasToken, signedByAny } from "../../ts/auth/sas.js";
import { devTls } from "../../ts/certs/dev-ca.js";
import { parseJson } from "../../ts/json.js";
import { nestedScopePath, scopePath } from "../../ts/service/scope.js";
import { moduleJson } from "../../ts/service/shapes.js";
import { tempDir } from "./fixtures.js";

const parents = new Set<RawHttpsParent>();
afterEach(async () => {
  await Promise.all([...parents].map((p) => p.close()));
});

interface FixtureForm {
  id: string;
  example: unknown;
}
const fixtureForms = (file: string) =>
  (
    JSON.parse(
      readFileSync(path.join(import.meta.dirname, "..", "fixtures", "upstream-forms", file), "utf8"),
    ) as { forms: FixtureForm[] }
  ).forms;
const FORMS = fixtureForms("scope.json");
/** The module identity read's example, `GET /devices/edge1/modules/%24edgeHub?api-version=…`. */
const MODULE_GET = fixtureForms("identity.json").find((f) => f.id === "module-identity.get")
  ?.example as string;
/** A scope form's example, from the fixture. */
export function scopeForm(id: string): unknown {
  const form = FORMS.find((f) => f.id === id);
  if (!form) throw new Error(`no form ${id} in scope.json`);
  return form.example;
}

/** One authorized call: the legacy GET, or the nested POST with its body. */
export interface ScopeCall {
  method: "GET" | "POST";
  url: string;
  /** The POST's body, parsed (`pageSize`, `continuationLink`, `authChain`). */
  body?: { pageSize: number; continuationLink?: string; authChain: string };
}

/** A request as it came: method, url, header lines as sent, body. */
export interface RecordedRequest {
  method: string;
  url: string;
  /** `[name, value, name, value, …]` as sent (`IncomingMessage.rawHeaders`). */
  rawHeaders: string[];
  body: string;
}

/** Where the parent's certificate lives and which hub its tokens name. */
export interface RawHttpsParentOptions {
  /** The hub name the tokens' resources start with (default `localhost`). */
  hubHostname?: string;
  /** A dir with (or for) the parent's CA and certificate (`devTls`), e.g. shared with a {@link RawParent}. */
  certDir?: string;
}

/** What a test answers the n-th authorized call with (n from 0). */
export type ScopeAnswer = (n: number, call: ScopeCall, res: ServerResponse) => void;

export class RawHttpsParent {
  readonly #server: https.Server;
  readonly #sockets = new Set<import("node:net").Socket>();
  /** Every authorized scope call, in order. */
  readonly calls: ScopeCall[] = [];
  /** Calls refused (off the form, bad token), with the reason. */
  readonly refused: string[] = [];
  /** Every request, as it came, refused or not. */
  readonly requests: RecordedRequest[] = [];
  /** The hub name tokens name. */
  readonly hubHostname: string;
  /**
   * The edge device's own key: when set, the module identity read of its `$edgeHub` is
   * served (keys: {@link RawHttpsParent.key}) to a device token signed with it.
   */
  deviceKey: string | undefined;
  readonly ca: string;
  /** The edge device this parent answers, and its `$edgeHub` key (random, base64 of 32 bytes). */
  readonly edgeId: string;
  key = randomBytes(32).toString("base64");
  /** How the nested POST route is answered: served, or 404/405 as a parent without it. */
  nestedRoute: "served" | 404 | 405 = "served";
  answer: ScopeAnswer = (_n, _call, res) => res.writeHead(404).end();
  /** How a single-identity call (its token good) is answered: none by default (404). */
  identityAnswer: (req: RecordedRequest, res: ServerResponse) => void = (_req, res) =>
    res.writeHead(404).end();
  /** How a module identity write (its token good) is answered: none by default (404). */
  moduleWriteAnswer: (req: RecordedRequest, res: ServerResponse) => void = (_req, res) =>
    res.writeHead(404).end();

  private constructor(server: https.Server, ca: string, edgeId: string, hubHostname: string) {
    this.#server = server;
    this.ca = ca;
    this.edgeId = edgeId;
    this.hubHostname = hubHostname;
  }

  /** A parent on a free port of 127.0.0.1, certificate for `localhost`. */
  static async start(edgeId = "edge1", options: RawHttpsParentOptions = {}): Promise<RawHttpsParent> {
    const material = await devTls(options.certDir ?? (await tempDir()), "localhost");
    const server = https.createServer({ cert: material.cert, key: material.key });
    const parent = new RawHttpsParent(server, material.ca, edgeId, options.hubHostname ?? "localhost");
    server.on("request", (req, res) => void parent.#serve(req, res));
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

  /** The chains of the nested calls, in order. */
  get chains(): string[] {
    return this.calls.flatMap((c) => (c.body ? [c.body.authChain] : []));
  }

  async close(): Promise<void> {
    parents.delete(this);
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? "";
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString("utf8");
    this.requests.push({ method: req.method ?? "", url, rawHeaders: req.rawHeaders, body: text });
    if (this.deviceKey !== undefined && req.method === "GET" && url.includes("/modules/%24")) {
      this.#serveModule(req, url, res);
      return;
    }
    // A single-identity call (scope.json `nested.on-behalf-of`, `legacy.get-one`) or a module
    // identity write forwarded on a child's behalf (identity.json `module-identity.put`,
    // `.list-delete`): the `$edgeHub` token checked here, the rest by the test's answer.
    const identityCall = /\/(getDeviceAndModuleOnBehalfOf|deviceAndModuleInDeviceScope)\?/.test(url);
    const moduleWrite =
      (req.method === "PUT" || req.method === "DELETE") && /^\/devices\/[^/]+\/modules\/[^/?]+\?/.test(url);
    if (identityCall || moduleWrite) {
      try {
        this.#checkToken(req.headers.authorization);
      } catch (err) {
        this.refused.push(`${(err as Error).message}: ${req.method} ${url}`);
        res.writeHead(401).end();
        return;
      }
      const answer = identityCall ? this.identityAnswer : this.moduleWriteAnswer;
      answer(this.requests.at(-1) as RecordedRequest, res);
      return;
    }
    let call: ScopeCall;
    try {
      call = this.#check(req, url, text);
    } catch (err) {
      this.refused.push(`${(err as Error).message}: ${req.method} ${url} ${text.slice(0, 200)}`);
      res.writeHead(401).end();
      return;
    }
    if (call.method === "POST" && this.nestedRoute !== "served") {
      res.writeHead(this.nestedRoute).end();
      return;
    }
    const n = this.calls.length;
    this.calls.push(call);
    this.answer(n, call, res);
  }

  /**
   * The module identity read of this edge's `$edgeHub`, exactly as identity.json's example
   * (IS `lib.rs#Client::get_module`), by the edge device's own token: the module with its keys.
   */
  #serveModule(req: IncomingMessage, url: string, res: ServerResponse): void {
    try {
      if (url !== MODULE_GET.replace("GET ", "").replace("edge1", this.edgeId))
        throw new Error(`not ${MODULE_GET} for ${this.edgeId}`);
      const token = parseSasToken(req.headers.authorization ?? "");
      if (token.resource !== `${this.hubHostname}/devices/${this.edgeId}`)
        throw new Error("not the device's token");
      if (token.expiry * 1000 < Date.now()) throw new Error("expired token");
      if (!signedByAny(token, [this.deviceKey ?? ""])) throw new Error("bad signature");
    } catch (err) {
      this.refused.push(`${(err as Error).message}: GET ${url}`);
      res.writeHead(401).end();
      return;
    }
    const body = moduleJson(
      {
        deviceId: this.edgeId,
        moduleId: "$edgeHub",
        generationId: "638000000000000002",
        etag: "AAAAAAAAAAE=",
        authentication: { type: "sas", symmetricKey: { primaryKey: this.key, secondaryKey: this.key } },
      },
      false,
    );
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  /** The call when it is the edge's own scope call in Microsoft's form; throws why not. */
  #check(req: IncomingMessage, url: string, text: string): ScopeCall {
    const [pathPart = "", query] = url.split("?");
    // Paths compared decoded, as an HTTP server routes them.
    const pathIs = (p: string) => decodeURIComponent(pathPart) === decodeURIComponent(p);
    this.#checkToken(req.headers.authorization);
    if (req.method === "POST") {
      // NestedDeviceScopeApiClient: the actor's path, api-version only, JSON body.
      const example = scopeForm("nested.post.path") as string;
      const wantQuery = example.split("?")[1];
      if (!pathIs(nestedScopePath(this.edgeId)) || query !== wantQuery)
        throw new Error(`not ${example} for ${this.edgeId}`);
      const headers = scopeForm("nested.post.headers") as Record<string, string>;
      if (req.headers["content-type"] !== headers["Content-Type"])
        throw new Error(`Content-Type is not ${headers["Content-Type"]}`);
      // Names as the fixture spells them (HTTP does not care; this keeps the form exact).
      for (const name of Object.keys(headers))
        if (!req.rawHeaders.includes(name)) throw new Error(`no header spelled ${name}`);
      const body = parseJson(text) as Record<string, unknown>;
      const keys = Object.keys(body);
      // NestedScopeRequest's fields in declaration order; the link only when it has one.
      const want =
        "continuationLink" in body
          ? ["pageSize", "continuationLink", "authChain"]
          : ["pageSize", "authChain"];
      if (keys.join() !== want.join()) throw new Error(`body fields ${keys.join()} are not ${want.join()}`);
      const { pageSize, continuationLink, authChain } = body;
      if (typeof pageSize !== "number" || !Number.isInteger(pageSize) || pageSize < 0 || pageSize > 1000)
        throw new Error("pageSize is not an integer 0..1000");
      if (typeof authChain !== "string" || !authChain.endsWith(this.edgeId))
        throw new Error("authChain does not end with the actor");
      if (continuationLink !== undefined && (typeof continuationLink !== "string" || continuationLink === ""))
        throw new Error("continuationLink is not a string");
      return {
        method: "POST",
        url,
        body: { pageSize, authChain, ...(continuationLink === undefined ? {} : { continuationLink }) },
      };
    }
    if (req.method === "GET") {
      if (!pathIs(scopePath(this.edgeId)) || query === undefined)
        throw new Error("not the legacy scope call");
      if (text !== "") throw new Error("a GET with a body");
      return { method: "GET", url };
    }
    throw new Error(`method ${req.method}`);
  }

  /**
   * A SAS token of this edge's `$edgeHub` (Microsoft's edge hub signs its scope calls with
   * it: `NestedDeviceScopeApiClient.cs#GetIdentitiesInTargetScope`), signed with its key, not expired.
   */
  #checkToken(header: string | undefined): void {
    const token = parseSasToken(header ?? "");
    if (decodeURIComponent(token.resource) !== `${this.hubHostname}/devices/${this.edgeId}/modules/$edgeHub`)
      throw new Error("token of another identity");
    if (token.expiry * 1000 < Date.now()) throw new Error("expired token");
    if (!signedByAny(token, [this.key])) throw new Error("bad signature");
  }
}
