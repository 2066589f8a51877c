/**
 * `edgehub module create | show | list | delete`: module identities of a device, as
 * `az iot hub module-identity` manages them, through `/devices/{id}/modules/{m}`.
 */
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { type CommandGroup, type CommandSpec, jsonLine, type Parsed, printable } from "./command.js";
import { withClient } from "./login.js";

const DEVICE = { name: "device-id", help: "the device the module belongs to" } as const;
const MODULE = { name: "module-id", help: "the module's id" } as const;

/** The device and module ids a command was given. */
const idsOf = (input: Parsed) => [input.args["device-id"] ?? "", input.args["module-id"] ?? ""] as const;

function moduleLine(m: Record<string, unknown>): string {
  const auth = (m.authentication as { type?: unknown } | undefined)?.type;
  return `${printable(`${String(m.deviceId)}/${String(m.moduleId)} auth=${String(auth)} ${String(m.connectionState)}`)}\n`;
}

const create: CommandSpec = {
  name: "module create",
  summary:
    "create a module with SAS keys the hub generates (its connection string: device connection-string --module)",
  args: [DEVICE, MODULE],
  login: true,
  async run(input, io) {
    const m = await withClient(input, (c) => c.createModule(...idsOf(input)));
    io.out(input.json ? jsonLine(m) : moduleLine(m));
  },
};

const show: CommandSpec = {
  name: "module show",
  summary: "print a module (--json: as the service API returns it, keys included)",
  args: [DEVICE, MODULE],
  login: true,
  async run(input, io) {
    const [deviceId, moduleId] = idsOf(input);
    const m = await withClient(input, (c) => c.getModule(deviceId, moduleId));
    if (!m) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `module ${deviceId}/${moduleId} not found`);
    io.out(input.json ? jsonLine(m) : moduleLine(m));
  },
};

const list: CommandSpec = {
  name: "module list",
  summary: "print the modules of a device, one line each",
  args: [DEVICE],
  login: true,
  async run(input, io) {
    const modules = await withClient(input, (c) => c.listModules(input.args["device-id"] ?? ""));
    io.out(input.json ? jsonLine(modules) : modules.map(moduleLine).join(""));
  },
};

const remove: CommandSpec = {
  name: "module delete",
  summary: "delete a module",
  args: [DEVICE, MODULE],
  login: true,
  async run(input, io) {
    const [deviceId, moduleId] = idsOf(input);
    await withClient(input, (c) => c.deleteModule(deviceId, moduleId));
    io.out(
      input.json
        ? jsonLine({ deviceId, moduleId, deleted: true })
        : `${printable(`${deviceId}/${moduleId}`)}: deleted\n`,
    );
  },
};

/** `edgehub module …`. */
export const moduleCommands: CommandGroup = {
  name: "module",
  summary: "module identities of the running hub's devices (as az iot hub module-identity)",
  commands: [create, show, list, remove],
};
