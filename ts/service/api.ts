/**
 * The service API over HTTPS with IoT Hub's paths and JSON shapes, authenticated by a
 * service SAS token (`skn=iothubowner`) signed with the hub's policy key:
 * devices and modules (PUT/GET/DELETE, list, query), twins (GET/PATCH), direct methods,
 * cloud-to-device send, and reading the built-in events queue.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Authenticator, PeerCertificate } from "../auth/authenticator.js";
import type { Device, Registry } from "../auth/registry.js";
import type { DeviceDelivery } from "../delivery/device-delivery.js";
import { EdgeHubError, type ErrorCode, ErrorCodes } from "../errors.js";
import { record } from "../json.js";
import type { Logger } from "../log.js";
import { type DirectMethods, SERVICE_CALLER } from "../methods/direct-methods.js";
import type { MessageStore } from "../store/index.js";
import type { Twins } from "../twin/twins.js";
import { DEAD_LETTER_QUEUE } from "../vocabulary.js";
import { applyBulk } from "./bulk.js";
import { C2D_MAX_BYTES, C2dRefused, sendCloudToDevice } from "./c2d.js";
import { checkServiceToken } from "./credential.js";
import { checkIfMatch, ifMatchOf } from "./etag.js";
import { EventStreams, page } from "./events.js";
import { ApiError, readBody, readJson, sendError, sendJson, unauthorized, unauthorizedBy } from "./http.js";
import { authorizeModuleCall } from "./module-caller.js";
import { answerModuleCall, isDeviceModuleCall, type ModuleWrites, putModule } from "./module-identity.js";
import { matches, parseQuery } from "./query.js";
import { answerScope, answerTargetScope, scopeCallOf } from "./scope.js";
import { answerIdentityCall, type IdentityRefresh } from "./scope-identity.js";
import { deviceJson, eventJson, methodCallOf, moduleJson, twinEtag, twinJson } from "./shapes.js";

/** What the API works on. */
export interface ServiceApiContext {
  hostname: string;
  serviceKey: string;
  registry: Registry;
  /** Checks the edge tokens of the scope sync call. */
  authenticator: Authenticator;
  /** The TLS client certificate of a request, when one was presented. */
  peerOf(req: IncomingMessage): PeerCertificate | undefined;
  twins: Twins;
  methods: DirectMethods;
  delivery: DeviceDelivery;
  store: MessageStore;
  eventsQueue: string;
  /** What `GET /messages/events/stream` follows: the events queue on a root, the upstream queues on an edge hub. */
  followedQueues: readonly string[];
  /** Drops the twin, session and queued deliveries of a deleted identity. */
  forget(clientId: string): Promise<void>;
  /** Calls back whenever new device-to-cloud messages were stored; returns an unsubscribe. */
  onStored(listener: () => void): () => void;
  isConnected(clientId: string): boolean;
  /** Where devices connect, for `GET /edge/endpoints`: the IoT hub their tokens name, the MQTT port. */
  endpoints(): { hubHostname: string; mqtts: number };
  /** The hub's link to its parent and backlog, for `GET /edge/status`. */
  status(): Promise<Record<string, unknown>>;
  /** A request on `req`'s socket passed authentication (the socket counts as authenticated). */
  authenticated?(req: IncomingMessage): void;
  /** A request was refused with 401 or 403; `code` is the `AUTH_*` code (for the metrics). */
  refused?(code: ErrorCode): void;
  /** On an edge hub: a device's module identity writes go to the parent. */
  moduleWrites?: ModuleWrites | undefined;
  /** On an edge hub: a child edge's ask for one identity its cache lacks goes to the parent. */
  refreshIdentity?: IdentityRefresh | undefined;
  log: Logger;
}

/** A nested scope request's body: three short fields. */
const SCOPE_REQUEST_MAX = 16 * 1024;

/** Maps registry errors to HTTP. */
function apiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof EdgeHubError) {
    switch (err.code) {
      case ErrorCodes.IDENTITY_EXISTS:
        return new ApiError(409, "DeviceAlreadyExists", err.message);
      case ErrorCodes.IDENTITY_NOT_FOUND:
        return new ApiError(404, "DeviceNotFound", err.message);
      case ErrorCodes.INVALID_ARGUMENT:
      case ErrorCodes.TWIN_INVALID:
        return new ApiError(400, "ArgumentInvalid", err.message);
      case ErrorCodes.STORE_FULL:
        return new ApiError(503, "ServiceUnavailable", err.message);
      default:
        break;
    }
  }
  return new ApiError(500, "ServerError", "internal error");
}

/** Handles one service API request. */
export class ServiceApi {
  readonly #ctx: ServiceApiContext;
  readonly #streams: EventStreams;

  constructor(ctx: ServiceApiContext) {
    this.#ctx = ctx;
    this.#streams = new EventStreams(ctx);
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.#route(req, res).catch((err: unknown) => {
      const e = apiError(err);
      // The caller gets one generic 401; why it was refused is for the operator.
      if (e.status === 401)
        this.#ctx.log.log("warn", "service-api-refused", { path: req.url, reason: e.detail ?? e.message });
      if (e.status === 401 || e.status === 403) this.#ctx.refused?.(e.authCode ?? ErrorCodes.AUTH_BAD_TOKEN);
      if (e.status >= 500)
        this.#ctx.log.log("error", "service-api-failed", { path: req.url, reason: (err as Error).message });
      if (!res.headersSent) sendError(res, e);
      else res.destroy();
    });
  }

  #authorize(req: IncomingMessage): void {
    const header = req.headers.authorization;
    if (!header) throw unauthorized("no Authorization header", ErrorCodes.AUTH_BAD_TOKEN);
    try {
      checkServiceToken(header, this.#ctx.hostname, this.#ctx.serviceKey, this.#ctx.authenticator);
    } catch (err) {
      // The policy's own checks are logged by their reason alone, as before they were shared.
      const policy =
        err instanceof EdgeHubError &&
        (err.code === ErrorCodes.AUTH_WRONG_AUDIENCE || err.code === ErrorCodes.AUTH_BAD_SIGNATURE);
      throw policy ? unauthorized(err.message, err.code) : unauthorizedBy(err);
    }
  }

  #device(id: string): Device {
    const d = this.#ctx.registry.getDevice(id);
    if (!d) throw new ApiError(404, "DeviceNotFound", `device ${id} not found`);
    return d;
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://hub");
    let parts: string[];
    try {
      parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new ApiError(400, "ArgumentInvalid", "path is not valid url-encoding");
    }
    const method = req.method ?? "GET";
    // The scope calls are the edge's own: authenticated by its device token, not the policy.
    const scopeCall = scopeCallOf(parts);
    if ((scopeCall === "legacy" && method === "GET") || (scopeCall === "nested" && method === "POST")) {
      const edgeId = parts[1] as string;
      const args = [this.#ctx.registry, this.#ctx.authenticator, edgeId, req.headers.authorization] as const;
      const scope =
        scopeCall === "legacy"
          ? answerScope(...args, this.#ctx.peerOf(req), url.searchParams)
          : await answerTargetScope(...args, this.#ctx.peerOf(req), () => readJson(req, SCOPE_REQUEST_MAX));
      this.#ctx.authenticated?.(req);
      return sendJson(res, 200, scope);
    }
    const peer = this.#ctx.peerOf(req);
    // One identity of an edge's scope (a login its cache could not place).
    const { registry, authenticator } = this.#ctx;
    const refresh = this.#ctx.refreshIdentity;
    const one = await answerIdentityCall(
      registry,
      authenticator,
      parts,
      req,
      peer,
      url.searchParams,
      refresh,
    );
    if (one) {
      this.#ctx.authenticated?.(req);
      return sendJson(res, 200, one);
    }
    // A device on its own modules (IoT Edge's identity service: `$edgeHub`'s keys, its modules).
    if (isDeviceModuleCall(parts, method, req.headers.authorization, peer))
      return answerModuleCall(this.#ctx, req, res, parts, peer);
    // A module calling a method through its hub signs as itself and names itself in a header.
    let caller = SERVICE_CALLER;
    if (req.headers["x-ms-edge-moduleid"] !== undefined)
      caller = authorizeModuleCall(req, parts, this.#ctx.authenticator);
    else this.#authorize(req);
    this.#ctx.authenticated?.(req);
    const ctx = this.#ctx;
    const [head, id, sub, mid] = parts;

    if (head === "devices" && id === "query" && parts.length === 2 && method === "POST") {
      const body = (await readJson(req)) as { query?: unknown } | undefined;
      const conditions = parseQuery(body?.query);
      const out: unknown[] = [];
      for (const d of ctx.registry.listDevices()) {
        const doc = twinJson(d, await ctx.twins.get(d.deviceId), undefined, ctx.isConnected(d.deviceId));
        if (matches(doc, conditions)) out.push(doc);
      }
      return sendJson(res, 200, out);
    }
    if (head === "devices" && parts.length === 1 && method === "POST") {
      const result = await applyBulk(ctx.registry, await readJson(req), (deviceId) =>
        this.#removeDevice(deviceId),
      );
      return sendJson(res, result.isSuccessful ? 200 : 400, result);
    }
    if (head === "devices" && parts.length === 1 && method === "GET") {
      return sendJson(
        res,
        200,
        ctx.registry.listDevices().map((d) => deviceJson(d, ctx.isConnected(d.deviceId))),
      );
    }
    if (head === "devices" && id && parts.length === 2) {
      if (method === "GET") return sendJson(res, 200, deviceJson(this.#device(id), ctx.isConnected(id)));
      if (method === "DELETE") {
        checkIfMatch(ifMatchOf(req.headers["if-match"]), this.#device(id).etag, `device ${id}`);
        await this.#removeDevice(id);
        res.writeHead(204).end();
        return;
      }
      if (method === "PUT") {
        const body = ((await readJson(req)) ?? {}) as Partial<Device>;
        if (body.deviceId !== undefined && body.deviceId !== id) {
          throw new ApiError(400, "ArgumentInvalid", "deviceId in the body differs from the path");
        }
        // As IoT Hub: PUT creates; replacing an existing device needs If-Match (etag or *).
        const current = ctx.registry.getDevice(id);
        const exists = current !== undefined;
        const ifMatch = ifMatchOf(req.headers["if-match"]);
        if (exists && !ifMatch) throw new ApiError(409, "DeviceAlreadyExists", `device ${id} already exists`);
        // Optimistic concurrency: a stale etag loses, as on IoT Hub.
        if (current) checkIfMatch(ifMatch, current.etag, `device ${id}`);
        const d = exists
          ? await ctx.registry.updateDevice({ ...body, deviceId: id })
          : await ctx.registry.createDevice({ ...body, deviceId: id });
        return sendJson(res, 200, deviceJson(d, ctx.isConnected(id)));
      }
    }
    if (head === "devices" && id && sub === "modules") {
      this.#device(id);
      if (parts.length === 3 && method === "GET") {
        return sendJson(
          res,
          200,
          ctx.registry.listModules(id).map((m) => moduleJson(m, ctx.isConnected(`${id}/${m.moduleId}`))),
        );
      }
      if (mid && parts.length === 4) {
        if (method === "GET") {
          const m = ctx.registry.getModule(id, mid);
          if (!m) throw new ApiError(404, "ModuleNotFound", `module ${id}/${mid} not found`);
          return sendJson(res, 200, moduleJson(m, ctx.isConnected(`${id}/${mid}`)));
        }
        if (method === "PUT") {
          const body = ((await readJson(req)) ?? {}) as Record<string, unknown>;
          return sendJson(res, 200, await putModule(ctx, id, mid, body, req.headers["if-match"]));
        }
        if (method === "DELETE") {
          await ctx.registry.deleteModule(id, mid);
          await ctx.forget(`${id}/${mid}`);
          res.writeHead(204).end();
          return;
        }
      }
    }
    if (
      head === "devices" &&
      id &&
      sub === "messages" &&
      mid === "deviceBound" &&
      parts.length === 4 &&
      method === "POST"
    ) {
      this.#device(id);
      const body = await readBody(req, C2D_MAX_BYTES);
      const properties = record<string>();
      for (const [k, v] of Object.entries(req.headers)) {
        if (k.startsWith("iothub-app-") && typeof v === "string")
          properties[k.slice("iothub-app-".length)] = v;
      }
      const h = (name: string) =>
        typeof req.headers[name] === "string" ? (req.headers[name] as string) : undefined;
      const message = {
        body,
        properties,
        messageId: h("iothub-messageid"),
        correlationId: h("iothub-correlationid"),
        contentType: h("content-type"),
        contentEncoding: h("content-encoding"),
      };
      const send = Object.fromEntries(Object.entries(message).filter(([, v]) => v !== undefined));
      try {
        await sendCloudToDevice(ctx.registry, ctx.delivery, id, {
          ...(send as { body: Buffer }),
          ack: h("iothub-ack"),
        });
      } catch (err) {
        if (err instanceof C2dRefused && err.reason === "invalid")
          throw new ApiError(400, "ArgumentInvalid", err.message);
        throw err;
      }
      res.writeHead(204).end();
      return;
    }
    if (head === "twins" && id) {
      const device = this.#device(id);
      const moduleId = sub === "modules" ? mid : undefined;
      if (sub === "modules" && (!mid || !ctx.registry.getModule(id, mid)))
        throw new ApiError(404, "ModuleNotFound", `module ${id}/${mid ?? ""} not found`);
      const clientId = moduleId === undefined ? id : `${id}/${moduleId}`;
      const rest = moduleId === undefined ? parts.slice(2) : parts.slice(4);
      if (rest.length === 0 && method === "GET") {
        return sendJson(
          res,
          200,
          twinJson(device, await ctx.twins.get(clientId), moduleId, ctx.isConnected(clientId)),
        );
      }
      if (rest.length === 0 && method === "PATCH") {
        const body = ((await readJson(req)) ?? {}) as { tags?: unknown; properties?: { desired?: unknown } };
        // A stale etag loses (412), as on IoT Hub; the SDK's updateTwin always sends one, or "*".
        checkIfMatch(
          ifMatchOf(req.headers["if-match"]),
          twinEtag(await ctx.twins.get(clientId)),
          `twin ${clientId}`,
        );
        if (body.tags !== undefined) await ctx.twins.patchTags(clientId, body.tags);
        const desired = body.properties?.desired;
        if (desired === null) {
          // `desired: null` clears them all: every current key patched to null.
          const current = (await ctx.twins.get(clientId)).desired.properties;
          const clear = Object.fromEntries(Object.keys(current).map((k) => [k, null]));
          if (Object.keys(clear).length > 0) await ctx.twins.patchDesired(clientId, clear);
        } else if (desired !== undefined) await ctx.twins.patchDesired(clientId, desired);
        return sendJson(
          res,
          200,
          twinJson(device, await ctx.twins.get(clientId), moduleId, ctx.isConnected(clientId)),
        );
      }
      if (rest.length === 1 && rest[0] === "methods" && method === "POST") {
        const r = await ctx.methods.invoke(clientId, methodCallOf(await readJson(req)), caller);
        if (r.status === 404)
          throw new ApiError(
            404,
            "DeviceNotOnline",
            `${clientId} is not connected or not listening for methods`,
          );
        if (r.status === 504) throw new ApiError(504, "GatewayTimeout", `${clientId} did not answer in time`);
        if (r.status === 429)
          throw new ApiError(429, "ThrottleBacklogLimitExceeded", (r.payload as { message: string }).message);
        return sendJson(res, 200, r);
      }
    }
    if (
      head === "messages" &&
      id === "events" &&
      sub === "stream" &&
      parts.length === 3 &&
      method === "GET"
    ) {
      return this.#streams.serve(req, res, url);
    }
    if (head === "messages" && id === "events" && parts.length === 2 && method === "GET") {
      return sendJson(res, 200, await page(ctx.store, ctx.eventsQueue, url, eventJson));
    }
    // edgehub's own paths (IoT Hub has none): the parent link's state, and dead letters.
    if (head === "edge" && id === "status" && parts.length === 2 && method === "GET") {
      return sendJson(res, 200, await ctx.status());
    }
    // What a device connection string names (HostName, GatewayHostName), for `edgehub device connection-string`.
    if (head === "edge" && id === "endpoints" && parts.length === 2 && method === "GET") {
      return sendJson(res, 200, { hostname: ctx.hostname, ...ctx.endpoints() });
    }
    // Messages the parent refused for good, with why.
    if (head === "edge" && id === "deadletter" && parts.length === 2 && method === "GET") {
      return sendJson(
        res,
        200,
        await page(ctx.store, DEAD_LETTER_QUEUE, url, (m) => ({
          ...eventJson(m),
          reason: m.properties["$.dlr"],
        })),
      );
    }
    throw new ApiError(404, "NotFound", `no ${method} ${url.pathname}`);
  }

  /** Deletes a device with its modules; nothing of it may reach a device later created with the same id. */
  async #removeDevice(id: string): Promise<void> {
    const modules = this.#ctx.registry.listModules(id).map((m) => `${id}/${m.moduleId}`);
    await this.#ctx.registry.deleteDevice(id);
    for (const clientId of [id, ...modules]) await this.#ctx.forget(clientId);
  }
}
