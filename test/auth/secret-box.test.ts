import { chmod, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SecretBox } from "../../ts/auth/secret-box.js";
import { tempDir } from "../helpers/fixtures.js";

describe("the secret box's key file", () => {
  it("is created 0600 and opens what it sealed after a reload", async () => {
    const file = join(await tempDir(), "secrets.key");
    const box = await SecretBox.fromKeyFile(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const sealed = box.seal(Buffer.from("key of dev1"), "devices/dev1");
    const again = await SecretBox.fromKeyFile(file);
    expect(again.open(sealed, "devices/dev1").toString()).toBe("key of dev1");
    expect(() => again.open(sealed, "devices/dev2")).toThrow(
      expect.objectContaining({ code: "SECRET_UNREADABLE" }),
    );
  });

  it("is made 0600 when found open to other users", async () => {
    const file = join(await tempDir(), "secrets.key");
    await SecretBox.fromKeyFile(file);
    const key = await readFile(file);
    await chmod(file, 0o644);
    const box = await SecretBox.fromKeyFile(file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(box.open((await SecretBox.fromKeyFile(file)).seal(Buffer.from("x"), "c"), "c").toString()).toBe(
      "x",
    );
    expect(await readFile(file)).toEqual(key);
  });

  it("refuses a key file of the wrong size with SECRET_UNREADABLE", async () => {
    const file = join(await tempDir(), "secrets.key");
    await writeFile(file, Buffer.alloc(0), { mode: 0o600 });
    await expect(SecretBox.fromKeyFile(file)).rejects.toMatchObject({ code: "SECRET_UNREADABLE" });
  });
});
