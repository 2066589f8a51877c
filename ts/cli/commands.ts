/**
 * The table of every `edgehub` command: the dispatcher (./edgehub.ts) runs from it, `edgehub
 * help` lists it, and the tests walk it (test/cli/every-command.test.ts fails for a command
 * it has no case for).
 *
 * Each entry loads its module on demand: `edgehub start` loads the hub and nothing of the
 * other commands (their service client, certificate tools and usage texts cost a running
 * hub about a megabyte of memory it never uses).
 */
import type { CommandGroup, CommandSpec } from "./command.js";

type Entry = CommandGroup | CommandSpec;

/** Every command by name: groups (`edgehub device create …`) and single ones (`edgehub monitor`), in help order. */
const LOADERS: ReadonlyArray<readonly [string, () => Promise<Entry>]> = [
  ["start", async () => (await import("./start.js")).startCommand],
  ["device", async () => (await import("./device.js")).deviceCommands],
  ["module", async () => (await import("./module.js")).moduleCommands],
  ["twin", async () => (await import("./twin.js")).twinCommands],
  ["method", async () => (await import("./method.js")).methodCommands],
  ["c2d", async () => (await import("./c2d.js")).c2dCommands],
  ["monitor", async () => (await import("./monitor.js")).monitorCommand],
  ["connection-string", async () => (await import("./connection-string.js")).connectionStringCommands],
  ["status", async () => (await import("./status.js")).statusCommand],
  ["identity", async () => (await import("./identity.js")).identityCommands],
  ["cert", async () => (await import("./cert.js")).certCommands],
];

/** The command or group named `name`, loaded; undefined when there is none. */
export async function loadCommand(name: string | undefined): Promise<Entry | undefined> {
  const entry = LOADERS.find(([n]) => n === name);
  if (!entry) return undefined;
  const loaded = await entry[1]();
  // The table's name is the one the module declares: a rename in one place only fails here.
  if (loaded.name !== name)
    throw new Error(`command table names ${name}, its module declares ${loaded.name}`);
  return loaded;
}

/** Every command and group, loaded, in help order. */
export async function loadCommands(): Promise<Entry[]> {
  return Promise.all(LOADERS.map(([, load]) => load()));
}

/** Whether `c` is a group of commands. */
export const isGroup = (c: Entry): c is CommandGroup => "commands" in c;

/** Every runnable command, groups flattened (`device create`, `device show`, …, `monitor`). */
export async function allCommands(): Promise<CommandSpec[]> {
  return (await loadCommands()).flatMap((c) => (isGroup(c) ? [...c.commands] : [c]));
}
