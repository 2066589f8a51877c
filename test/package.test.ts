import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { tempDir } from "./helpers/fixtures.js";

const run = promisify(execFile);

describe("the built package", () => {
  it('works as `import { MessageStore } from "edgehub"` with its declarations', async () => {
    const dir = await tempDir();
    const script = `
      import { MessageStore, ErrorCodes } from "edgehub";
      const s = await MessageStore.open(${JSON.stringify(dir)});
      const [o] = await s.append("q", [{ body: Buffer.from("hello") }]);
      const [m] = await s.read("q");
      await s.close();
      console.log(JSON.stringify({ o, body: m.body.toString(), code: ErrorCodes.STORE_FULL }));
    `;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script], {
      cwd: new URL("../", import.meta.url),
    });
    expect(JSON.parse(stdout)).toEqual({ o: 0, body: "hello", code: "STORE_FULL" });
    const pkg = JSON.parse(
      await (await import("node:fs/promises")).readFile(new URL("../package.json", import.meta.url), "utf8"),
    );
    const { access } = await import("node:fs/promises");
    await access(new URL(`../${pkg.types.replace("./", "")}`, import.meta.url));
  });
});
