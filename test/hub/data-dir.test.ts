/** The data directory is private to the hub's user: made 0700, tightened if open to others, refused if it cannot be. */
import { chmod, mkdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { EdgeHub, type Logger } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";

function recording(): Logger & { events: Array<{ event: string; fields?: Record<string, unknown> }> } {
  const events: Array<{ event: string; fields?: Record<string, unknown> }> = [];
  return { events, log: (_level, event, fields) => events.push({ event, fields }) };
}

const start = (dataDir: string, log: Logger) =>
  EdgeHub.start(
    { hostname: "localhost", dataDir, listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false } },
    log,
  );

describe("dataDir permissions", () => {
  it("creates a new dataDir 0700", async () => {
    const dir = join(await tempDir(), "new");
    const hub = await start(dir, recording());
    await hub.close();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  it("tightens an existing dataDir open to group and others to 0700 at start, and logs it", async () => {
    const dir = join(await tempDir(), "wide");
    await mkdir(dir);
    await chmod(dir, 0o755);
    const log = recording();
    const hub = await start(dir, log);
    await hub.close();
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect(log.events).toContainEqual({
      event: "data-dir-mode-tightened",
      fields: { dataDir: dir, was: "0755", now: "0700" },
    });
  });

  it("refuses with CONFIG_INVALID a dataDir open to others that it cannot make 0700", async () => {
    // /proc/1 is 0555 and its mode cannot be changed, not even by root.
    const err = await start("/proc/1", recording()).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "CONFIG_INVALID" });
    expect(String(err)).toMatch(/dataDir: \/proc\/1 is open to other users \(mode 0555\)/);
  });
});
