/**
 * The table of every `edgehub` command: the dispatcher (./edgehub.ts) runs from it, `edgehub
 * help` lists it, and the tests walk it (test/cli/every-command.test.ts fails for a command
 * it has no case for).
 */
import { c2dCommands } from "./c2d.js";
import { certCommands } from "./cert.js";
import type { CommandGroup, CommandSpec } from "./command.js";
import { connectionStringCommands } from "./connection-string.js";
import { deviceCommands } from "./device.js";
import { identityCommands } from "./identity.js";
import { methodCommands } from "./method.js";
import { moduleCommands } from "./module.js";
import { monitorCommand } from "./monitor.js";
import { startCommand } from "./start.js";
import { statusCommand } from "./status.js";
import { twinCommands } from "./twin.js";

/** Every command: groups (`edgehub device create …`) and single ones (`edgehub monitor`), in help order. */
export const COMMANDS: ReadonlyArray<CommandGroup | CommandSpec> = [
  startCommand,
  deviceCommands,
  moduleCommands,
  twinCommands,
  methodCommands,
  c2dCommands,
  monitorCommand,
  connectionStringCommands,
  statusCommand,
  identityCommands,
  certCommands,
];

/** Whether `c` is a group of commands. */
export const isGroup = (c: CommandGroup | CommandSpec): c is CommandGroup => "commands" in c;

/** Every runnable command, groups flattened (`device create`, `device show`, …, `monitor`). */
export function allCommands(): CommandSpec[] {
  return COMMANDS.flatMap((c) => (isGroup(c) ? [...c.commands] : [c]));
}
