/**
 * The `edgehub` command's client of a running hub's service API: the login (a service
 * connection string, given or read from the data dir), SAS tokens for it, and HTTPS calls
 * with IoT Hub's shapes and errors explained in terms of what to check.
 */
import { access, readFile } from "node:fs/promises";
import https from "node:https";
import { join } from "node:path";
import { createSasToken } from "../auth/sas.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** A command line the `identity` commands cannot run: the caller prints the usage (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

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

/** What a service SAS token is made from: the parts of a service connection string. */
export interface ServiceLogin {
  /** `HostName`: the hub's hostname, the token's audience and the TLS server name. */
  hostname: string;
  /** `SharedAccessKeyName`: the policy (the hub accepts `iothubowner`). */
  keyName: string;
  /** `SharedAccessKey`: the policy key, base64. */
  key: string;
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

/**
 * Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`. Throws `INVALID_ARGUMENT`
 * naming the missing part (never echoing the key).
 */
export function parseServiceConnectionString(connectionString: string): ServiceLogin {
  const fields = new Map<string, string>();
  for (const part of connectionString.trim().split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const hostname = fields.get("HostName");
  const keyName = fields.get("SharedAccessKeyName");
  const key = fields.get("SharedAccessKey");
  if (!hostname || !keyName || !key) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      "the service connection string needs HostName, SharedAccessKeyName and SharedAccessKey",
    );
  }
  return { hostname, keyName, key };
}

/**
 * The login for the service API: `login` (a service connection string) when given, else
 * the one the hub wrote to `<dataDir>/service-connection-string`.
 */
export async function readServiceLogin(options: { login?: string; dataDir: string }): Promise<ServiceLogin> {
  if (options.login !== undefined) return parseServiceConnectionString(options.login);
  const file = join(options.dataDir, "service-connection-string");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pass --data-dir with the hub's data directory, or --login with its service connection string`,
      { cause: err },
    );
  }
  return parseServiceConnectionString(text);
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

/** The service API calls the `identity` commands need, authenticated with a fresh SAS token each. */
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
    const r = await this.#request("GET", `/devices/${encodeURIComponent(deviceId)}`, undefined, {}, [404]);
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
      query: `SELECT * FROM devices WHERE ${where}`,
    });
    if (!Array.isArray(r.body)) throw new Error("the hub answered the query with something not a list");
    return r.body.map((twin: unknown) => {
      const id = (twin as { deviceId?: unknown } | null)?.deviceId;
      if (typeof id !== "string") throw new Error("the hub answered the query with a twin without deviceId");
      return id;
    });
  }

  /** Replaces a device (`PUT` with `If-Match` on its etag); returns it as the hub now has it. */
  async replaceDevice(device: DeviceJson): Promise<DeviceJson> {
    const r = await this.#request("PUT", `/devices/${encodeURIComponent(device.deviceId)}`, device, {
      "if-match": `"${device.etag.replace(/^"|"$/g, "")}"`,
    });
    return deviceFrom(r.body);
  }

  /** The hub's status (`GET /edge/status`), as the hub sent it. */
  async edgeStatus(): Promise<unknown> {
    return (await this.#request("GET", "/edge/status")).body;
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }

  #request(
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
    expected: number[] = [],
  ): Promise<{ status: number; body: unknown }> {
    const o = this.#options;
    const token = createSasToken(
      o.hostname,
      o.key,
      Math.floor(Date.now() / 1000) + TOKEN_LIFETIME_SECS,
      o.keyName,
    );
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const where = `https://${o.hostname}:${o.port}`;
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: o.hostname,
          port: o.port,
          path: `${path}?api-version=${API_VERSION}`,
          method,
          agent: this.#agent,
          timeout: TIMEOUT_MS,
          headers: {
            authorization: token,
            accept: "application/json",
            ...(payload ? { "content-type": "application/json", "content-length": payload.length } : {}),
            ...headers,
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const status = res.statusCode ?? 0;
            const text = Buffer.concat(chunks).toString("utf8");
            let parsed: unknown;
            try {
              parsed = text ? JSON.parse(text) : undefined;
            } catch {
              reject(new Error(`${method} ${path}: the hub answered ${status} with a body that is not JSON`));
              return;
            }
            if ((status >= 200 && status < 300) || expected.includes(status))
              resolve({ status, body: parsed });
            else reject(replyError(method, path, status, parsed));
          });
        },
      );
      req.on("timeout", () => req.destroy(new Error(`no answer in ${TIMEOUT_MS / 1000} s`)));
      req.on("error", (err: NodeJS.ErrnoException) => reject(transportError(where, err)));
      req.end(payload);
    });
  }
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

/** The `parseArgs` options of a command's login: `--login`, `--data-dir`, `--port`, `--ca`. */
export const LOGIN_OPTIONS = {
  login: { type: "string", short: "l" },
  "data-dir": { type: "string" },
  port: { type: "string" },
  ca: { type: "string" },
} as const;

/**
 * The client the login options name: `--login` or `<--data-dir>/service-connection-string`
 * (default `./edgehub-data`), `--port` (default 8443), `--ca` (default
 * `<dataDir>/certs/ca.pem` when present, else the system's CAs). Throws {@link UsageError}
 * for a bad port.
 */
export async function clientFromOptions(options: {
  login?: string | undefined;
  dataDir?: string | undefined;
  port?: string | undefined;
  ca?: string | undefined;
}): Promise<ServiceClient> {
  const portText = options.port ?? "8443";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    throw new UsageError(`--port ${portText} is not a port number 1-65535`);
  const dataDir = options.dataDir ?? "./edgehub-data";
  const login = await readServiceLogin({
    dataDir,
    ...(options.login === undefined ? {} : { login: options.login }),
  });
  const ca = await readCa(options.ca, dataDir);
  return new ServiceClient({ ...login, port, ...(ca === undefined ? {} : { ca }) });
}

/** The CA to trust: `--ca`, else `<dataDir>/certs/ca.pem` when present, else the system's. */
async function readCa(file: string | undefined, dataDir: string): Promise<string | undefined> {
  const path = file ?? join(dataDir, "certs", "ca.pem");
  if (file === undefined) {
    try {
      await access(path);
    } catch {
      return undefined;
    }
  }
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      `cannot read --ca ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      { cause: err },
    );
  }
}
