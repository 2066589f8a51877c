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
import { parseArgs } from "node:util";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import {
  clientFromOptions,
  type DeviceJson,
  LOGIN_OPTIONS,
  ServiceApiError,
  type ServiceClient,
  UsageError,
} from "./service-client.js";

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
  const allowed = command === undefined || !Object.hasOwn(COMMANDS, command) ? undefined : COMMANDS[command];
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
        ...LOGIN_OPTIONS,
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

  const client = await clientFromOptions({
    login: str("login"),
    dataDir: str("data-dir"),
    port: str("port"),
    ca: str("ca"),
  });
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
