import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type EdgeHubError, MessageStore } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";

// A real full disk: a small tmpfs mounted for the test (CI runs as root).
const mounts: string[] = [];
afterEach(() => {
  for (const m of mounts.splice(0)) execFileSync("umount", ["-l", m]);
});

async function smallDisk(mb: number): Promise<string> {
  const dir = await tempDir("edgehub-disk-");
  execFileSync("mount", ["-t", "tmpfs", "-o", `size=${mb}m`, "tmpfs", dir]);
  mounts.push(dir);
  return dir;
}

describe("full disk", () => {
  it("fails appends with STORE_IO, loses nothing acknowledged, and recovers when space returns", async () => {
    const disk = await smallDisk(24);
    const path = join(disk, "store");
    const s = await MessageStore.open(path);
    const acked = new Map<number, Buffer>();
    let failure: EdgeHubError | undefined;
    for (let i = 0; i < 10_000 && !failure; i++) {
      const body = randomBytes(16 * 1024);
      try {
        const [offset] = await s.append("q", [{ body }]);
        acked.set(offset as number, body);
      } catch (err) {
        failure = err as EdgeHubError;
      }
    }
    expect(failure?.code).toBe("STORE_IO");
    expect(failure?.message).toMatch(/space/i);
    expect(failure?.message).toContain(path);
    expect(acked.size).toBeGreaterThan(100);
    await s.close().catch(() => undefined);

    execFileSync("mount", ["-o", "remount,size=96m", disk]);
    const r = await MessageStore.open(path);
    try {
      const stored = await r.read("q", { limit: 100_000, maxBytes: 2 ** 31 });
      expect(stored.length).toBe(acked.size);
      for (const m of stored) expect(Buffer.compare(m.body, acked.get(m.offset) as Buffer)).toBe(0);
      // Offsets continue after the last acknowledged one: the failed append left nothing.
      expect(await r.append("q", [{ body: Buffer.from("after") }])).toEqual([acked.size]);
    } finally {
      await r.close();
    }
  });
});
