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
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { type CommandGroup, type CommandSpec, jsonLine, type OptionSpec, UsageError } from "./command.js";
import { withClient } from "./login.js";
import { type DeviceJson, ServiceApiError, type ServiceClient } from "./service-client.js";

/** The edge device a scope belongs to (`ms-azure-iot-edge://{id}-{generationId}`), else the scope. */
export function scopeOwner(scope: string): string {
  return /^ms-azure-iot-edge:\/\/(.+)-\d+$/.exec(scope)?.[1] ?? scope;
}

function invalid(message: string): EdgeHubError {
  return new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** The parent: it must exist and be an edge device with a scope (else `IDENTITY_NOT_FOUND`, `INVALID_ARGUMENT`). */
export async function edgeParent(
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

function childList(value: string, spec: CommandSpec): string[] {
  const ids = value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (ids.length === 0) throw new UsageError("--child-list names no device", spec);
  return ids;
}

const DEVICE_ID: OptionSpec = {
  name: "device-id",
  short: "d",
  value: "<edge>",
  required: true,
  help: "the parent: an edge device",
};
const CHILD_LIST: OptionSpec = {
  name: "child-list",
  short: "c",
  value: "<id,…>",
  help: "comma-separated device ids",
};

const addChildrenCommand: CommandSpec = {
  name: "identity add-children",
  summary: "make devices children of an edge device (as az iot hub device-identity children add)",
  options: [
    DEVICE_ID,
    CHILD_LIST,
    {
      name: "where",
      value: "<condition>",
      help: 'a condition of SELECT * FROM devices WHERE …, e.g. "capabilities.iotEdge = false" (never selects the parent)',
    },
    { name: "force", help: "move children that have another parent" },
  ],
  login: true,
  notes: "One of --child-list or --where. Prints one line per child: added, moved or already a child.",
  async run(input, io) {
    const list = input.opt("child-list");
    const where = input.opt("where");
    if ((list === undefined) === (where === undefined))
      throw new UsageError("identity add-children needs one of --child-list or --where", this);
    if (where !== undefined && where.trim() === "") throw new UsageError("--where is empty", this);
    const parentId = input.opt("device-id") ?? "";
    const selection: ChildSelection =
      list !== undefined ? { childList: childList(list, this) } : { where: where ?? "" };
    const results = await withClient(input, (c) =>
      addChildren(c, parentId, selection, { force: input.flag("force") }),
    );
    if (input.json) return io.out(jsonLine(results));
    for (const r of results) {
      if (r.outcome === "added") io.out(`${r.deviceId}: added to ${parentId}\n`);
      else if (r.outcome === "moved")
        io.out(`${r.deviceId}: moved from ${r.previousParent} to ${parentId}\n`);
      else io.out(`${r.deviceId}: already a child of ${parentId}\n`);
    }
  },
};

const removeChildrenCommand: CommandSpec = {
  name: "identity remove-children",
  summary: "detach children from an edge device",
  options: [DEVICE_ID, CHILD_LIST, { name: "remove-all", help: "remove every child of the parent" }],
  login: true,
  notes: "One of --child-list or --remove-all.",
  async run(input, io) {
    const list = input.opt("child-list");
    if ((list === undefined) === !input.flag("remove-all"))
      throw new UsageError("identity remove-children needs one of --child-list or --remove-all", this);
    const parentId = input.opt("device-id") ?? "";
    const selection: RemoveSelection =
      list !== undefined ? { childList: childList(list, this) } : { all: true };
    const removed = await withClient(input, (c) => removeChildren(c, parentId, selection));
    if (input.json) return io.out(jsonLine(removed));
    for (const id of removed) io.out(`${id}: removed from ${parentId}\n`);
    if (removed.length === 0) io.err(`${parentId} has no children\n`);
  },
};

const listChildrenCommand: CommandSpec = {
  name: "identity list-children",
  summary: "print the children of an edge device, one id per line",
  options: [DEVICE_ID],
  login: true,
  async run(input, io) {
    const ids = await withClient(input, (c) => listChildren(c, input.opt("device-id") ?? ""));
    io.out(input.json ? jsonLine(ids) : ids.map((id) => `${id}\n`).join(""));
  },
};

/** `edgehub identity …`: parent/child relations of edge devices. */
export const identityCommands: CommandGroup = {
  name: "identity",
  summary: "parent/child relations of edge devices, through the running hub's service API",
  commands: [addChildrenCommand, removeChildrenCommand, listChildrenCommand],
};
