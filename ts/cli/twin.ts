/**
 * `edgehub twin show | update`: a device's or module's twin, as `az iot hub device-twin` /
 * `module-twin` show and update it, through `GET/PATCH /twins/{id}[/modules/{m}]`.
 */
import { parseJson } from "../json.js";
import { type CommandGroup, type CommandSpec, jsonLine, type OptionSpec, UsageError } from "./command.js";
import { withClient } from "./login.js";

const ID = { name: "device-id", help: "the device" } as const;
const MODULE: OptionSpec = {
  name: "module",
  value: "<module-id>",
  help: "the twin of this module of the device",
};

/** A JSON object option, or a usage error naming the option. */
export function jsonOption(text: string, option: string, spec: CommandSpec): unknown {
  try {
    return parseJson(text);
  } catch (err) {
    throw new UsageError(`--${option} is not JSON: ${(err as Error).message}`, spec);
  }
}

const show: CommandSpec = {
  name: "twin show",
  summary: "print a twin as JSON (tags, desired and reported properties)",
  args: [ID],
  options: [MODULE],
  login: true,
  async run(input, io) {
    const twin = await withClient(input, (c) =>
      c.getTwin(input.args["device-id"] ?? "", input.opt("module")),
    );
    io.out(input.json ? jsonLine(twin) : `${JSON.stringify(twin, null, 2)}\n`);
  },
};

const update: CommandSpec = {
  name: "twin update",
  summary:
    "patch a twin's desired properties (null deletes a key) and tags; the device gets the desired patch",
  args: [ID],
  options: [
    MODULE,
    { name: "desired", value: "<json>", help: `a desired-properties patch, e.g. '{"interval":5}'` },
    { name: "tags", value: "<json>", help: "a tags patch" },
  ],
  login: true,
  notes: "Needs --desired or --tags. Prints the twin after the patch.",
  async run(input, io) {
    const desired = input.opt("desired");
    const tags = input.opt("tags");
    if (desired === undefined && tags === undefined)
      throw new UsageError("twin update needs --desired or --tags", this);
    const patch = {
      ...(tags === undefined ? {} : { tags: jsonOption(tags, "tags", this) }),
      ...(desired === undefined ? {} : { properties: { desired: jsonOption(desired, "desired", this) } }),
    };
    const twin = await withClient(input, (c) =>
      c.updateTwin(input.args["device-id"] ?? "", input.opt("module"), patch),
    );
    io.out(input.json ? jsonLine(twin) : `${JSON.stringify(twin, null, 2)}\n`);
  },
};

/** `edgehub twin …`. */
export const twinCommands: CommandGroup = {
  name: "twin",
  summary: "device and module twins (as az iot hub device-twin / module-twin)",
  commands: [show, update],
};
