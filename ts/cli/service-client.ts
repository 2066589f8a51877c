/**
 * The `edgehub` command's client of a running hub's service API: SAS tokens for its login
 * (./login.ts), and HTTPS calls with IoT Hub's paths and shapes, errors explained in terms
 * of what to check.
 */
import https from "node:https";
import { createSasToken } from "../auth/sas.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { CURSOR_HEADER, HEARTBEAT_MS } from "../service/events.js";
import type { ServiceLogin } from "./login.js";

/**
 * The hub answered a service API call with an error other than 400 or 404 (those become
 * `INVALID_ARGUMENT` and `IDENTITY_NOT_FOUND`): 401 for a wrong login, 409, 5xx, …
 */
export class ServiceApiError extends Error {
  constructor(
    /** The HTTP status. */
    readonly status: number,
    /** IoT Hub's `ErrorCode:` text from the body (e.g. `IotHubUnauthorizedAccess`), or "". */
    readonly errorCode: string,
    message: string,
  ) {
    super(message);
    this.name = "ServiceApiError";
  }
}

/** A device as the service API returns it; fields this module does not read pass through unchanged. */
export interface DeviceJson {
  deviceId: string;
  etag: string;
  capabilities: { iotEdge: boolean };
  deviceScope: string | null;
  parentScopes: string[];
  [field: string]: unknown;
}

/** Where the service API is and how to trust it. */
export interface ServiceClientOptions extends ServiceLogin {
  /** The hub's HTTPS port (`listen.https`). */
  port: number;
  /** CA certificate(s) to trust, PEM; the system's CAs when absent. */
  ca?: string;
}

const API_VERSION = "2021-04-12";
const TOKEN_LIFETIME_SECS = 3600;
const TIMEOUT_MS = 30_000;
const TLS_TRUST_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_HAS_EXPIRED",
]);

function isDeviceJson(v: unknown): v is DeviceJson {
  if (typeof v !== "object" || v === null) return false;
  const d = v as Record<string, unknown>;
  const caps = d.capabilities as Record<string, unknown> | null | undefined;
  return (
    typeof d.deviceId === "string" &&
    typeof d.etag === "string" &&
    typeof caps?.iotEdge === "boolean" &&
    (d.deviceScope === null || d.deviceScope === undefined || typeof d.deviceScope === "string") &&
    Array.isArray(d.parentScopes) &&
    d.parentScopes.every((s) => typeof s === "string")
  );
}

function deviceFrom(v: unknown): DeviceJson {
  if (!isDeviceJson(v)) throw new Error("the hub answered with something that is not a device");
  return { ...v, deviceScope: v.deviceScope ?? null };
}

/**
 * The events stream stopped without the reader asking: the hub stopped or restarted, or the
 * network failed. Following again from where it left off may work (`edgehub monitor` does).
 */
export class StreamLostError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "StreamLostError";
  }
}

/** A lost stream's error, with what failed. */
function lost(where: string, err: NodeJS.ErrnoException): StreamLostError {
  return new StreamLostError(`lost the hub at ${where} (${err.code ?? err.message})`, { cause: err });
}

/** A stream line's message, checked as far as the command reads it (the line is the hub's, or whoever answered). */
function eventFrom(v: unknown): EventJson {
  const e = v as Partial<EventJson> | null;
  if (
    typeof e !== "object" ||
    e === null ||
    typeof e.offset !== "number" ||
    typeof e.deviceId !== "string" ||
    typeof e.body !== "string" ||
    typeof e.enqueuedTime !== "string" ||
    typeof e.properties !== "object" ||
    e.properties === null ||
    typeof e.systemProperties !== "object" ||
    e.systemProperties === null
  )
    throw new Error("not a message");
  return e as EventJson;
}

/** Where the hub's devices connect: what a device connection string names. */
export interface HubEndpoints {
  /** The hub's own hostname (`GatewayHostName`). */
  hostname: string;
  /** The IoT hub device tokens name (`HostName`): this hub on a root, its parent's `hubHostname` on an edge. */
  hubHostname: string;
  /** The MQTT-over-TLS port devices connect to. */
  mqtts: number;
  /** The AMQP-over-TLS port; 0 when that listener is off. */
  amqps: number;
  /** A root's Event Hubs–compatible endpoint; null on an edge hub. */
  eventHub: { name: string; consumerGroups: string[]; connectionString: string } | null;
}

/** A stored device-to-cloud message as the events stream gives it (ts/service/shapes.ts#eventJson). */
export interface EventJson {
  /** The store queue it was read from (`$events` on a root, `$upstream…` on an edge hub). */
  queue?: string;
  offset: number;
  deviceId: string;
  moduleId?: string;
  enqueuedTime: string;
  properties: Record<string, string>;
  systemProperties: Record<string, string>;
  /** base64 */
  body: string;
}

interface RequestOptions {
  /** JSON, or raw bytes sent as they are. */
  body?: unknown;
  headers?: Record<string, string>;
  /** Statuses besides 2xx that resolve instead of throwing. */
  expected?: number[];
  timeoutMs?: number;
}

const path = (...segments: string[]) => `/${segments.map(encodeURIComponent).join("/")}`;
const identityPath = (root: string, deviceId: string, moduleId: string | undefined) =>
  moduleId === undefined ? path(root, deviceId) : path(root, deviceId, "modules", moduleId);

/** The service API calls the `edgehub` commands make, authenticated with a fresh SAS token each. */
export class ServiceClient {
  readonly #options: ServiceClientOptions;
  readonly #agent: https.Agent;

  constructor(options: ServiceClientOptions) {
    this.#options = options;
    this.#agent = new https.Agent({
      keepAlive: true,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
    });
  }

  /** The device `deviceId`, or undefined when the hub has none. */
  async getDevice(deviceId: string): Promise<DeviceJson | undefined> {
    const r = await this.#request("GET", path("devices", deviceId), { expected: [404] });
    return r.status === 404 ? undefined : deviceFrom(r.body);
  }

  /** Every device of the hub. */
  async listDevices(): Promise<DeviceJson[]> {
    const r = await this.#request("GET", "/devices");
    if (!Array.isArray(r.body)) throw new Error("the hub answered GET /devices with something not a list");
    return r.body.map(deviceFrom);
  }

  /** The ids of the devices `SELECT * FROM devices WHERE {where}` selects. */
  async queryDeviceIds(where: string): Promise<string[]> {
    const r = await this.#request("POST", "/devices/query", {
      body: { query: `SELECT * FROM devices WHERE ${where}` },
    });
    if (!Array.isArray(r.body)) throw new Error("the hub answered the query with something not a list");
    return r.body.map((twin: unknown) => {
      const id = (twin as { deviceId?: unknown } | null)?.deviceId;
      if (typeof id !== "string") throw new Error("the hub answered the query with a twin without deviceId");
      return id;
    });
  }

  /** Creates a device (`PUT` without `If-Match`: a device of that id already there is a 409). */
  async createDevice(device: { deviceId: string; [field: string]: unknown }): Promise<DeviceJson> {
    const r = await this.#request("PUT", path("devices", device.deviceId), { body: device });
    return deviceFrom(r.body);
  }

  /** Replaces a device (`PUT` with `If-Match` on its etag); returns it as the hub now has it. */
  async replaceDevice(device: DeviceJson): Promise<DeviceJson> {
    const r = await this.#request("PUT", path("devices", device.deviceId), {
      body: device,
      headers: { "if-match": `"${device.etag.replace(/^"|"$/g, "")}"` },
    });
    return deviceFrom(r.body);
  }

  /** Deletes a device and its modules, whatever its etag. */
  async deleteDevice(deviceId: string): Promise<void> {
    await this.#request("DELETE", path("devices", deviceId), { headers: { "if-match": "*" } });
  }

  /** A module, or undefined when the device has none of that id. */
  async getModule(deviceId: string, moduleId: string): Promise<Record<string, unknown> | undefined> {
    const r = await this.#request("GET", path("devices", deviceId, "modules", moduleId), { expected: [404] });
    return r.status === 404 ? undefined : objectFrom(r.body, "a module");
  }

  /** The modules of a device. */
  async listModules(deviceId: string): Promise<Record<string, unknown>[]> {
    const r = await this.#request("GET", path("devices", deviceId, "modules"));
    if (!Array.isArray(r.body)) throw new Error("the hub answered the module list with something not a list");
    return r.body.map((m: unknown) => objectFrom(m, "a module"));
  }

  /** Creates a module with SAS keys the hub generates. */
  async createModule(deviceId: string, moduleId: string): Promise<Record<string, unknown>> {
    const r = await this.#request("PUT", path("devices", deviceId, "modules", moduleId), {
      body: { deviceId, moduleId },
    });
    return objectFrom(r.body, "a module");
  }

  /** Deletes a module. */
  async deleteModule(deviceId: string, moduleId: string): Promise<void> {
    await this.#request("DELETE", path("devices", deviceId, "modules", moduleId), {
      headers: { "if-match": "*" },
    });
  }

  /** The twin of a device or module. */
  async getTwin(deviceId: string, moduleId?: string): Promise<Record<string, unknown>> {
    const r = await this.#request("GET", identityPath("twins", deviceId, moduleId));
    return objectFrom(r.body, "a twin");
  }

  /** Patches a twin's desired properties and tags, whatever its etag; returns the twin after. */
  async updateTwin(
    deviceId: string,
    moduleId: string | undefined,
    patch: { tags?: unknown; properties?: { desired?: unknown } },
  ): Promise<Record<string, unknown>> {
    const r = await this.#request("PATCH", identityPath("twins", deviceId, moduleId), {
      body: patch,
      headers: { "if-match": "*" },
    });
    return objectFrom(r.body, "a twin");
  }

  /** Invokes a direct method; resolves with the device's status and payload. */
  async invokeMethod(
    deviceId: string,
    moduleId: string | undefined,
    call: { methodName: string; payload: unknown; responseTimeoutInSeconds: number },
  ): Promise<{ status: number; payload: unknown }> {
    const r = await this.#request("POST", `${identityPath("twins", deviceId, moduleId)}/methods`, {
      body: call,
      // The hub waits up to the method's timeout for the device: the request waits longer.
      timeoutMs: (call.responseTimeoutInSeconds + 10) * 1000,
    });
    const reply = objectFrom(r.body, "a method result");
    if (typeof reply.status !== "number")
      throw new Error("the hub answered the method call without a status");
    return { status: reply.status, payload: reply.payload };
  }

  /** Sends a cloud-to-device message with application properties. */
  async sendC2D(deviceId: string, body: Buffer, properties: ReadonlyMap<string, string>): Promise<void> {
    const headers: Record<string, string> = {};
    for (const [k, v] of properties) headers[`iothub-app-${k}`] = v;
    await this.#request("POST", path("devices", deviceId, "messages", "deviceBound"), { body, headers });
  }

  /** The service connection string this client logs in with. */
  get connectionString(): string {
    const o = this.#options;
    return `HostName=${o.hostname};SharedAccessKeyName=${o.keyName};SharedAccessKey=${o.key}`;
  }

  /** Where devices connect to this hub (`GET /edge/endpoints`, edgehub's own path). */
  async endpoints(): Promise<HubEndpoints> {
    const r = objectFrom((await this.#request("GET", "/edge/endpoints")).body, "the hub's endpoints");
    if (typeof r.hostname !== "string" || typeof r.hubHostname !== "string" || typeof r.mqtts !== "number")
      throw new Error("the hub answered GET /edge/endpoints without hostname, hubHostname and mqtts");
    const eh = r.eventHub;
    const eventHub =
      typeof eh === "object" &&
      eh !== null &&
      typeof (eh as Record<string, unknown>).name === "string" &&
      typeof (eh as Record<string, unknown>).connectionString === "string"
        ? {
            name: String((eh as Record<string, unknown>).name),
            consumerGroups:
              ((eh as Record<string, unknown>).consumerGroups as unknown[] | undefined)?.map(String) ?? [],
            connectionString: String((eh as Record<string, unknown>).connectionString),
          }
        : null;
    const amqps = typeof r.amqps === "number" ? r.amqps : 0;
    return { hostname: r.hostname, hubHostname: r.hubHostname, mqtts: r.mqtts, amqps, eventHub };
  }

  /**
   * Follows the hub's device-to-cloud messages from `from` (`end`: only what arrives from
   * now; or a cursor `queue:offset,…` where a lost stream left off), calling `onOpen` with the
   * stream's starting cursor once the hub answered and `onEvent` per message, until `signal`
   * aborts (resolves) or the stream fails (rejects: {@link StreamLostError} when following
   * again may work, another error when it cannot).
   */
  follow(
    from: string,
    onEvent: (e: EventJson) => void,
    signal: AbortSignal,
    onOpen: (cursor: string | undefined) => void = () => undefined,
  ): Promise<void> {
    const o = this.#options;
    const where = `https://${o.hostname}:${o.port}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error) => {
        if (settled) return;
        settled = true;
        if (err === undefined || signal.aborted) resolve();
        else reject(err);
      };
      const req = https.request(
        {
          host: o.hostname,
          port: o.port,
          path: `/messages/events/stream?api-version=${API_VERSION}&from=${encodeURIComponent(from)}`,
          agent: this.#agent,
          signal,
          headers: { authorization: this.#token(), accept: "application/x-ndjson" },
        },
        (res) => {
          if (res.statusCode !== 200) {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => {
              let body: unknown;
              try {
                body = parseBody(chunks);
              } catch {
                body = undefined;
              }
              settle(replyError("GET", "/messages/events/stream", res.statusCode ?? 0, body));
            });
            return;
          }
          const cursor = res.headers[CURSOR_HEADER];
          onOpen(typeof cursor === "string" ? cursor : undefined);
          // The hub writes at least an empty line every HEARTBEAT_MS: silence three times that long is a dead link.
          res.socket.setTimeout(HEARTBEAT_MS * 3, () =>
            req.destroy(
              new StreamLostError(`no word from the hub at ${where} in ${(HEARTBEAT_MS * 3) / 1000} s`),
            ),
          );
          let pending = "";
          res.setEncoding("utf8");
          res.on("data", (text: string) => {
            const lines = (pending + text).split("\n");
            pending = lines.pop() ?? "";
            for (const line of lines) {
              if (!line) continue;
              let event: EventJson;
              try {
                event = eventFrom(JSON.parse(line));
              } catch {
                settle(new Error("the hub sent a line that is not a message"));
                req.destroy();
                return;
              }
              onEvent(event);
            }
          });
          res.on("end", () => settle(new StreamLostError(`the hub at ${where} ended the events stream`)));
          res.on("close", () => {
            if (!res.complete) settle(new StreamLostError(`the hub at ${where} closed the events stream`));
          });
          res.on("error", (err) => settle(err instanceof StreamLostError ? err : lost(where, err)));
        },
      );
      req.on("error", (err: NodeJS.ErrnoException) =>
        settle(
          err instanceof StreamLostError
            ? err
            : TLS_TRUST_CODES.has(err.code ?? "")
              ? transportError(where, err)
              : lost(where, err),
        ),
      );
      req.end();
    });
  }

  /** The hub's status (`GET /edge/status`), as the hub sent it. */
  async edgeStatus(): Promise<unknown> {
    return (await this.#request("GET", "/edge/status")).body;
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }

  #token(): string {
    const o = this.#options;
    return createSasToken(o.hostname, o.key, Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SECS, o.keyName);
  }

  #request(
    method: string,
    route: string,
    options: RequestOptions = {},
  ): Promise<{ status: number; body: unknown }> {
    const o = this.#options;
    const { body, headers = {}, expected = [], timeoutMs = TIMEOUT_MS } = options;
    const raw = Buffer.isBuffer(body);
    const payload = body === undefined ? undefined : raw ? body : Buffer.from(JSON.stringify(body));
    const where = `https://${o.hostname}:${o.port}`;
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: o.hostname,
          port: o.port,
          path: `${route}?api-version=${API_VERSION}`,
          method,
          agent: this.#agent,
          timeout: timeoutMs,
          headers: {
            authorization: this.#token(),
            accept: "application/json",
            // Raw bytes (a C2D body) go without a type: the hub would make it the message's content type.
            ...(payload ? { "content-length": payload.length } : {}),
            ...(payload && !raw ? { "content-type": "application/json" } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            let parsed: unknown;
            try {
              parsed = parseBody(chunks);
            } catch {
              reject(
                new Error(`${method} ${route}: the hub answered ${status} with a body that is not JSON`),
              );
              return;
            }
            if ((status >= 200 && status < 300) || expected.includes(status))
              resolve({ status, body: parsed });
            else reject(replyError(method, route, status, parsed));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs / 1000} s`)));
      req.on("error", (err: NodeJS.ErrnoException) => reject(transportError(where, err)));
      req.end(payload);
    });
  }
}

function parseBody(chunks: Buffer[]): unknown {
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? JSON.parse(text) : undefined;
}

function objectFrom(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new Error(`the hub answered with something that is not ${what}`);
  return v as Record<string, unknown>;
}

/** The error for a non-2xx reply, from IoT Hub's `{ Message: "ErrorCode:<code>;<text>" }`. */
function replyError(method: string, path: string, status: number, body: unknown): Error {
  const message = (body as { Message?: unknown } | undefined)?.Message;
  const m = typeof message === "string" ? /^ErrorCode:([^;]*);(.*)$/s.exec(message) : null;
  const errorCode = m?.[1] ?? "";
  const text = m?.[2] ?? (typeof message === "string" ? message : `${method} ${path} answered ${status}`);
  if (status === 400) return new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, `the hub refused: ${text}`);
  if (status === 404) return new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, text);
  const hint =
    status === 401
      ? " (check the service connection string: --login, or <dataDir>/service-connection-string of this hub)"
      : "";
  return new ServiceApiError(status, errorCode, `the hub answered ${status} ${errorCode}: ${text}${hint}`);
}

/** A connection or TLS failure, with what to check. */
function transportError(where: string, err: NodeJS.ErrnoException): Error {
  const code = err.code ?? "";
  if (TLS_TRUST_CODES.has(code)) {
    return new Error(
      `TLS to ${where} failed (${code}: ${err.message}): pass --ca with the hub's CA certificate (default <dataDir>/certs/ca.pem)`,
      { cause: err },
    );
  }
  return new Error(
    `cannot reach the hub's service API at ${where} (${code || err.message}): is the hub running, and is --port its listen.https port?`,
    { cause: err },
  );
}
