/**
 * The service API over HTTPS with IoT Hub's paths and JSON shapes, authenticated by a
 * service SAS token (`skn=iothubowner`) signed with the hub's policy key:
 * devices and modules (PUT/GET/DELETE, list, query), twins (GET/PATCH), direct methods,
 * cloud-to-device send, and reading the built-in events queue. One table of routes
 * (method, path, who may call, handler) read top to bottom: the first row that matches wins.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { SERVICE_CALLER } from "../methods/direct-methods.js";
import { DEAD_LETTER_QUEUE } from "../vocabulary.js";
import type { Call, ServiceApiContext } from "./context.js";
import { EventStreams, page } from "./events.js";
import { ApiError, readJson, sendError, sendJson, unauthorized, unauthorizedBy } from "./http.js";
import { authorizeModuleCall } from "./module-caller.js";
import { answerModuleCall, isDeviceModuleCall } from "./module-identity.js";
import {
  bulkDevices,
  deleteDevice,
  deleteModule,
  getDevice,
  getModule,
  listDevices,
  listModules,
  putDevice,
  putModule,
  queryDevices,
} from "./registry-routes.js";
import { RouteTable } from "./route-table.js";
import { answerScope, answerTargetScope } from "./scope.js";
import { answerIdentityCall } from "./scope-identity.js";
import { verifyServiceToken } from "./service-side.js";
import { eventJson } from "./shapes.js";
import { getTwin, invokeMethod, patchTwin, purgeC2D, sendC2D } from "./twin-routes.js";

export type { ServiceApiContext } from "./context.js";

/** A nested scope request's body: three short fields. */
const SCOPE_REQUEST_MAX = 16 * 1024;

/**
 * Who may call a route:
 * - `service` (the default): the hub's policy (an `iothubowner` token), or a module of an
 *   edge invoking a direct method with its own token (./module-caller.ts);
 * - `edge`: the handler authenticates the edge device itself (the device scope calls, and
 *   the single identities of its scope);
 * - `device`: the row is taken only for a device's own credential (a SAS token without
 *   `skn`, or a client certificate alone), which the handler authenticates; any other
 *   caller goes on to the `service` row of the same path.
 */
type Access = "service" | "edge" | "device";

/** A row of the table. */
interface Route {
  method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  /** Segments; `:name` takes one (decoded), the rest must be equal. */
  path: string;
  access?: Access;
  handle(call: Call): Promise<void> | void;
}

const SCOPE = "/devices/:edge/modules/$edgeHub";

/** The service API. A new operation is a new row; order matters only between rows of one path. */
const ROUTES: readonly Route[] = [
  // The scope calls are the edge's own: authenticated by its device token, not the policy.
  { method: "GET", path: `${SCOPE}/devicesAndModulesInDeviceScope`, access: "edge", handle: legacyScope },
  {
    method: "POST",
    path: `${SCOPE}/devicesAndModulesInTargetDeviceScope`,
    access: "edge",
    handle: nestedScope,
  },
  // One identity of an edge's scope (a login its cache could not place).
  { method: "POST", path: `${SCOPE}/getDeviceAndModuleOnBehalfOf`, access: "edge", handle: identityCall },
  { method: "GET", path: `${SCOPE}/deviceAndModuleInDeviceScope`, access: "edge", handle: identityCall },
  // A device on its own modules (IoT Edge's identity service: `$edgeHub`'s keys, its modules).
  { method: "GET", path: "/devices/:id/modules", access: "device", handle: ownModules },
  { method: "GET", path: "/devices/:id/modules/:moduleId", access: "device", handle: ownModules },
  { method: "PUT", path: "/devices/:id/modules/:moduleId", access: "device", handle: ownModules },
  { method: "DELETE", path: "/devices/:id/modules/:moduleId", access: "device", handle: ownModules },
  { method: "POST", path: "/devices/query", handle: queryDevices },
  { method: "POST", path: "/devices", handle: bulkDevices },
  { method: "GET", path: "/devices", handle: listDevices },
  { method: "GET", path: "/devices/:id", handle: getDevice },
  { method: "DELETE", path: "/devices/:id", handle: deleteDevice },
  { method: "PUT", path: "/devices/:id", handle: putDevice },
  { method: "GET", path: "/devices/:id/modules", handle: listModules },
  { method: "GET", path: "/devices/:id/modules/:moduleId", handle: getModule },
  { method: "PUT", path: "/devices/:id/modules/:moduleId", handle: putModule },
  { method: "DELETE", path: "/devices/:id/modules/:moduleId", handle: deleteModule },
  { method: "POST", path: "/devices/:id/messages/deviceBound", handle: sendC2D },
  { method: "DELETE", path: "/devices/:id/commands", handle: purgeC2D },
  { method: "GET", path: "/twins/:id", handle: getTwin },
  { method: "PATCH", path: "/twins/:id", handle: patchTwin },
  { method: "POST", path: "/twins/:id/methods", handle: invokeMethod },
  { method: "GET", path: "/twins/:id/modules/:moduleId", handle: getTwin },
  { method: "PATCH", path: "/twins/:id/modules/:moduleId", handle: patchTwin },
  { method: "POST", path: "/twins/:id/modules/:moduleId/methods", handle: invokeMethod },
  { method: "GET", path: "/messages/events/stream", handle: (c) => c.streams.serve(c.req, c.res, c.url) },
  { method: "GET", path: "/messages/events", handle: events },
  // edgehub's own paths (IoT Hub has none): the parent link's state, where devices connect
  // (for `edgehub device connection-string`), and what the parent refused for good.
  { method: "GET", path: "/edge/status", handle: async (c) => sendJson(c.res, 200, await c.ctx.status()) },
  { method: "GET", path: "/edge/endpoints", handle: endpoints },
  { method: "GET", path: "/edge/deadletter", handle: deadLetters },
];

const TABLE = new RouteTable<Route>(ROUTES);

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
      case ErrorCodes.C2D_QUEUE_FULL:
        return new ApiError(403, "DeviceMaximumQueueDepthExceeded", err.message);
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

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const ctx = this.#ctx;
    const url = new URL(req.url ?? "/", "https://hub");
    let parts: string[];
    try {
      parts = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    } catch {
      throw new ApiError(400, "ArgumentInvalid", "path is not valid url-encoding");
    }
    const method = req.method ?? "GET";
    const found = TABLE.match(
      method,
      parts,
      (route) =>
        route.access !== "device" ||
        isDeviceModuleCall(parts, method, req.headers.authorization, ctx.peerOf(req)),
    );
    let caller = SERVICE_CALLER;
    // A path no row serves is answered 404 to the policy only: others learn nothing of it.
    if ((found?.row.access ?? "service") === "service") {
      caller = this.#authorize(req, parts);
      ctx.authenticated?.(req);
    }
    if (!found) throw new ApiError(404, "NotFound", `no ${method} ${url.pathname}`);
    await found.row.handle({
      ctx,
      req,
      res,
      url,
      parts,
      params: found.params,
      caller,
      streams: this.#streams,
    });
  }

  /**
   * The caller of a `service` route: the policy, or a module whose own token calls a
   * method (`x-ms-edge-moduleId` names it). Throws 401/403 otherwise.
   */
  #authorize(req: IncomingMessage, parts: string[]): string {
    if (req.headers["x-ms-edge-moduleid"] !== undefined)
      return authorizeModuleCall(req, parts, this.#ctx.authenticator);
    const header = req.headers.authorization;
    if (!header) throw unauthorized("no Authorization header", ErrorCodes.AUTH_BAD_TOKEN);
    const { hostname, serviceKey: key, authenticator } = this.#ctx;
    try {
      verifyServiceToken({ hostname, key, authenticator }, header);
    } catch (err) {
      // A token that parses and has not expired but is not the policy's: logged as it was.
      const code = (err as EdgeHubError).code;
      if (code === ErrorCodes.AUTH_WRONG_AUDIENCE || code === ErrorCodes.AUTH_BAD_SIGNATURE)
        throw unauthorized((err as Error).message, code);
      throw unauthorizedBy(err);
    }
    return SERVICE_CALLER;
  }
}

/** The scope-call arguments every form shares: who asks, for which edge. */
function scopeArgs({ ctx, req, params }: Call) {
  return [ctx.registry, ctx.authenticator, params.get("edge"), req.headers.authorization] as const;
}

/** `GET …/devicesAndModulesInDeviceScope`: IoT Hub's paged scope of the edge. */
function legacyScope(call: Call): void {
  const { ctx, req, res, url } = call;
  const scope = answerScope(...scopeArgs(call), ctx.peerOf(req), url.searchParams);
  ctx.authenticated?.(req);
  sendJson(res, 200, scope);
}

/** `POST …/devicesAndModulesInTargetDeviceScope`: a nested edge asking for a child's scope. */
async function nestedScope(call: Call): Promise<void> {
  const { ctx, req, res } = call;
  const read = () => readJson(req, SCOPE_REQUEST_MAX);
  const scope = await answerTargetScope(...scopeArgs(call), ctx.peerOf(req), read);
  ctx.authenticated?.(req);
  sendJson(res, 200, scope);
}

/** `getDeviceAndModuleOnBehalfOf` (nested) or `deviceAndModuleInDeviceScope` (legacy): one identity. */
async function identityCall({ ctx, req, res, parts, url }: Call): Promise<void> {
  const peer = ctx.peerOf(req);
  const one = await answerIdentityCall(
    ctx.registry,
    ctx.authenticator,
    parts,
    req,
    peer,
    url.searchParams,
    ctx.refreshIdentity,
  );
  // The rows name exactly the paths and methods it answers.
  if (!one) throw new ApiError(404, "NotFound", `no ${req.method} ${url.pathname}`);
  ctx.authenticated?.(req);
  sendJson(res, 200, one);
}

/** A device's call on its own modules: it authenticates, answers and marks the socket itself. */
function ownModules({ ctx, req, res, parts }: Call): Promise<void> {
  return answerModuleCall(ctx, req, res, parts, ctx.peerOf(req));
}

async function events({ ctx, res, url }: Call): Promise<void> {
  sendJson(res, 200, await page(ctx.store, ctx.eventsQueue, url, eventJson));
}

function endpoints({ ctx, res }: Call): void {
  sendJson(res, 200, { hostname: ctx.hostname, ...ctx.endpoints() });
}

/** Messages the parent refused for good, with why. */
async function deadLetters({ ctx, res, url }: Call): Promise<void> {
  const reasonOf = (m: Parameters<typeof eventJson>[0]) => ({
    ...eventJson(m),
    reason: m.properties["$.dlr"],
  });
  sendJson(res, 200, await page(ctx.store, DEAD_LETTER_QUEUE, url, reasonOf));
}
