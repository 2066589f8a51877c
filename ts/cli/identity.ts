/**
 * `edgehub identity add-children | remove-children | list-children`: the parent/child
 * relations of edge devices, as `az iot hub device-identity children add|remove|list`
 * manages them on IoT Hub. Everything goes through the running hub's service API over
 * HTTPS (`GET /devices[/{id}]`, `PUT /devices/{id}` with `If-Match`, `POST /devices/query`),
 * never through the store, which the hub holds open.
 *
 * As IoT Hub models it: an edge device has a `deviceScope`; a child's `parentScopes` is
 * `[that scope]`, and a child that is not an edge device also takes it as its own
 * `deviceScope`. A child has one parent.
 */
import { access, readFile } from "node:fs/promises";
import https from "node:https";
import { join } from "node:path";
import { parseArgs } from "node:util";
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

/** The edge device a scope belongs to (`ms-azure-iot-edge://{id}-{generationId}`), else the scope. */
function scopeOwner(scope: string): string {
  return /^ms-azure-iot-edge:\/\/(.+)-\d+$/.exec(scope)?.[1] ?? scope;
}

function invalid(message: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** The parent: it must exist and be an edge device with a scope. */
async function edgeParent(
  client: ServiceClient,
  parentId: string,
): Promise<DeviceJson & { deviceScope: string }> {
  const parent = await client.getDevice(parentId);
  if (!parent) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `parent device ${parentId} not found`);
  if (!parent.capabilities.iotEdge)
    throw invalid(`parent device ${parentId} is not an edge device (capabilities.iotEdge is false)`);
  const scope = parent.deviceScope;
  if (!scope) throw invalid(`parent device ${parentId} has no deviceScope`);
  return { ...parent, deviceScope: scope };
}

/** Fetches each listed device; throws `IDENTITY_NOT_FOUND` naming every unknown id. */
async function fetchAll(client: ServiceClient, ids: readonly string[]): Promise<DeviceJson[]> {
  const found: DeviceJson[] = [];
  const missing: string[] = [];
  for (const id of ids) {
    const d = await client.getDevice(id);
    if (d) found.push(d);
    else missing.push(id);
  }
  if (missing.length > 0)
    throw new EdgeHubError(
      ErrorCodes.IDENTITY_NOT_FOUND,
      `child device${missing.length > 1 ? "s" : ""} ${missing.join(", ")} not found; nothing changed`,
    );
  return found;
}

/**
 * Applies `change` to each device in turn. A failure part way names what was already done,
 * keeping the error's class and code.
 */
async function applyEach(
  devices: readonly DeviceJson[],
  change: (d: DeviceJson) => DeviceJson,
  client: ServiceClient,
  verb: string,
): Promise<void> {
  const done: string[] = [];
  for (const d of devices) {
    try {
      await client.replaceDevice(change(d));
    } catch (err) {
      const reason = (err as Error).message;
      const message = `${done.length > 0 ? `${verb} ${done.join(", ")}, then ` : ""}failed on ${d.deviceId}: ${reason}`;
      if (err instanceof EdgeHubError) throw new EdgeHubError(err.code, message, { cause: err });
      if (err instanceof ServiceApiError) throw new ServiceApiError(err.status, err.errorCode, message);
      throw new Error(message, { cause: err });
    }
    done.push(d.deviceId);
  }
}

/** Which devices become children: listed ids, or those a query condition selects. */
export type ChildSelection = { childList: readonly string[] } | { where: string };

/** What happened to one child in {@link addChildren}. */
export interface AddedChild {
  deviceId: string;
  /** `added`: had no parent; `moved`: had another parent (`--force`); `unchanged`: already a child. */
  outcome: "added" | "moved" | "unchanged";
  /** The previous parent's id (its scope when the scope names no device), for `moved`. */
  previousParent?: string;
}

/**
 * Makes devices children of the edge device `parentId`: sets their `parentScopes` to the
 * parent's scope (and a non-edge child's `deviceScope` too). Every child is checked before
 * any is changed: unknown ids throw `IDENTITY_NOT_FOUND`; a child that has another parent
 * throws `INVALID_ARGUMENT` unless `force`; the parent is never its own child (a `where`
 * selection leaves it out). An edge device as child needs the hub's `allowNesting`, and
 * is refused when it is an ancestor of the parent.
 */
export async function addChildren(
  client: ServiceClient,
  parentId: string,
  selection: ChildSelection,
  options: { force?: boolean } = {},
): Promise<AddedChild[]> {
  const parent = await edgeParent(client, parentId);
  const scope = parent.deviceScope;
  let ids: string[];
  if ("childList" in selection) {
    ids = [...new Set(selection.childList)];
    if (ids.includes(parentId)) throw invalid(`device ${parentId} cannot be a child of itself`);
  } else {
    ids = (await client.queryDeviceIds(selection.where)).filter((id) => id !== parentId);
    if (ids.length === 0)
      throw invalid(`no device other than ${parentId} matches WHERE ${selection.where}; nothing changed`);
  }
  if (ids.length === 0) throw invalid("no child device given");
  const children = await fetchAll(client, ids);

  const taken = children.filter((c) => c.parentScopes[0] !== undefined && c.parentScopes[0] !== scope);
  if (taken.length > 0 && !options.force) {
    const list = taken.map((c) => `${c.deviceId} (child of ${scopeOwner(c.parentScopes[0] ?? "")})`);
    throw invalid(
      `${list.join(", ")} already ${taken.length > 1 ? "have" : "has"} another parent; nothing changed. Pass --force to move ${taken.length > 1 ? "them" : "it"} to ${parentId}`,
    );
  }
  const edgeChildren = new Set(children.filter((c) => c.capabilities.iotEdge).map((c) => c.deviceId));
  if (edgeChildren.size > 0) await refuseCycles(client, parent, edgeChildren);

  const results: AddedChild[] = children.map((c) => {
    const previous = c.parentScopes[0];
    if (previous === scope) return { deviceId: c.deviceId, outcome: "unchanged" };
    if (previous === undefined) return { deviceId: c.deviceId, outcome: "added" };
    return { deviceId: c.deviceId, outcome: "moved", previousParent: scopeOwner(previous) };
  });
  const toChange = children.filter((c) => c.parentScopes[0] !== scope);
  await applyEach(
    toChange,
    (c) => ({ ...c, parentScopes: [scope], ...(c.capabilities.iotEdge ? {} : { deviceScope: scope }) }),
    client,
    "added",
  );
  return results;
}

/** Refuses to make an ancestor of `parent` its child: the hierarchy must stay a tree. */
async function refuseCycles(
  client: ServiceClient,
  parent: DeviceJson,
  edgeChildren: ReadonlySet<string>,
): Promise<void> {
  const byScope = new Map<string, DeviceJson>();
  for (const d of await client.listDevices()) {
    if (d.capabilities.iotEdge && d.deviceScope) byScope.set(d.deviceScope, d);
  }
  const seen = new Set<string>([parent.deviceId]);
  for (let up = parent.parentScopes[0]; up !== undefined; ) {
    const ancestor = byScope.get(up);
    if (!ancestor || seen.has(ancestor.deviceId)) break;
    if (edgeChildren.has(ancestor.deviceId))
      throw invalid(
        `${ancestor.deviceId} is an ancestor of ${parent.deviceId}; making it a child would make a cycle. Nothing changed`,
      );
    seen.add(ancestor.deviceId);
    up = ancestor.parentScopes[0];
  }
}

/** Which children to remove: listed ids, or all of them. */
export type RemoveSelection = { childList: readonly string[] } | { all: true };

/**
 * Detaches children from the edge device `parentId`: empties their `parentScopes` (and a
 * non-edge child's `deviceScope`). Listed ids are all checked first: an unknown id throws
 * `IDENTITY_NOT_FOUND`, a device that is not a child of this parent `INVALID_ARGUMENT`.
 * Returns the ids removed, sorted.
 */
export async function removeChildren(
  client: ServiceClient,
  parentId: string,
  selection: RemoveSelection,
): Promise<string[]> {
  const parent = await edgeParent(client, parentId);
  const scope = parent.deviceScope;
  let children: DeviceJson[];
  if ("all" in selection) {
    children = (await client.listDevices()).filter((d) => d.parentScopes.includes(scope));
  } else {
    const ids = [...new Set(selection.childList)];
    if (ids.length === 0) throw invalid("no child device given");
    children = await fetchAll(client, ids);
    const strangers = children.filter((c) => !c.parentScopes.includes(scope)).map((c) => c.deviceId);
    if (strangers.length > 0)
      throw invalid(
        `${strangers.join(", ")} ${strangers.length > 1 ? "are not children" : "is not a child"} of ${parentId}; nothing changed`,
      );
  }
  await applyEach(
    children,
    (c) => ({ ...c, parentScopes: [], ...(c.capabilities.iotEdge ? {} : { deviceScope: null }) }),
    client,
    "removed",
  );
  return children.map((c) => c.deviceId).sort();
}

/** The ids of the children of the edge device `parentId`, sorted. */
export async function listChildren(client: ServiceClient, parentId: string): Promise<string[]> {
  const parent = await edgeParent(client, parentId);
  return (await client.listDevices())
    .filter((d) => d.parentScopes.includes(parent.deviceScope))
    .map((d) => d.deviceId)
    .sort();
}

/** Where the `identity` commands write. */
export interface CommandOutput {
  out(text: string): void;
  err(text: string): void;
}

const COMMANDS: Record<string, readonly string[]> = {
  "add-children": ["child-list", "where", "force"],
  "remove-children": ["child-list", "remove-all"],
  "list-children": [],
};
const COMMON = ["device-id", "login", "data-dir", "port", "ca"];

function childList(value: string): string[] {
  const ids = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (ids.length === 0) throw new UsageError("--child-list names no device");
  return ids;
}

/**
 * Runs `edgehub identity <add-children|remove-children|list-children> …` (`argv` without
 * `identity`): parses the options, logs in, calls the hub, prints one line per device.
 * Throws {@link UsageError} for a bad command line.
 */
export async function runIdentityCommand(argv: readonly string[], output: CommandOutput): Promise<void> {
  const [command, ...rest] = argv;
  const allowed = command === undefined ? undefined : COMMANDS[command];
  if (command === undefined || allowed === undefined)
    throw new UsageError(
      `identity needs a command: ${Object.keys(COMMANDS).join(", ")}${command ? ` (not ${command})` : ""}`,
    );
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...rest],
      allowPositionals: false,
      strict: true,
      options: {
        "device-id": { type: "string", short: "d" },
        "child-list": { type: "string", short: "c" },
        where: { type: "string" },
        force: { type: "boolean" },
        "remove-all": { type: "boolean" },
        login: { type: "string", short: "l" },
        "data-dir": { type: "string" },
        port: { type: "string" },
        ca: { type: "string" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  for (const name of Object.keys(values)) {
    if (!COMMON.includes(name) && !allowed.includes(name))
      throw new UsageError(`--${name} does not apply to identity ${command}`);
  }
  const str = (name: string): string | undefined => {
    const v = values[name];
    return typeof v === "string" ? v : undefined;
  };
  const parentId = str("device-id");
  if (!parentId) throw new UsageError(`identity ${command} needs --device-id <edge device>`);
  const list = str("child-list");
  const where = str("where");
  const removeAll = values["remove-all"] === true;
  if (command === "add-children" && (list === undefined) === (where === undefined))
    throw new UsageError("identity add-children needs one of --child-list or --where");
  if (command === "remove-children" && (list === undefined) === !removeAll)
    throw new UsageError("identity remove-children needs one of --child-list or --remove-all");
  if (where !== undefined && where.trim() === "") throw new UsageError("--where is empty");

  const portText = str("port") ?? "8443";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    throw new UsageError(`--port ${portText} is not a port number 1-65535`);
  const dataDir = str("data-dir") ?? "./edgehub-data";
  const login = await readServiceLogin({
    dataDir,
    ...(str("login") === undefined ? {} : { login: str("login") }),
  });
  const ca = await readCa(str("ca"), dataDir);

  const client = new ServiceClient({ ...login, port, ...(ca === undefined ? {} : { ca }) });
  try {
    if (command === "list-children") {
      for (const id of await listChildren(client, parentId)) output.out(`${id}\n`);
    } else if (command === "add-children") {
      const selection: ChildSelection =
        list !== undefined ? { childList: childList(list) } : { where: where ?? "" };
      const results = await addChildren(client, parentId, selection, { force: values.force === true });
      for (const r of results) {
        if (r.outcome === "added") output.out(`${r.deviceId}: added to ${parentId}\n`);
        else if (r.outcome === "moved")
          output.out(`${r.deviceId}: moved from ${r.previousParent} to ${parentId}\n`);
        else output.out(`${r.deviceId}: already a child of ${parentId}\n`);
      }
    } else {
      const selection: RemoveSelection = list !== undefined ? { childList: childList(list) } : { all: true };
      const removed = await removeChildren(client, parentId, selection);
      for (const id of removed) output.out(`${id}: removed from ${parentId}\n`);
      if (removed.length === 0) output.err(`${parentId} has no children\n`);
    }
  } finally {
    client.close();
  }
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
