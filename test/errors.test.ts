import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ErrorCodes } from "../ts/index.js";

const root = new URL("../", import.meta.url);

describe("error catalogue", () => {
  it("has unique codes, each documented in docs/errors.md", async () => {
    const codes = Object.values(ErrorCodes);
    expect(new Set(codes).size).toBe(codes.length);
    for (const [key, code] of Object.entries(ErrorCodes)) expect(key).toBe(code);
    const doc = await readFile(new URL("docs/errors.md", root), "utf8");
    for (const code of codes)
      expect(doc, `docs/errors.md documents ${code}`).toMatch(new RegExp(`^## \`${code}\``, "m"));
  });

  it("covers every code the Rust store can produce", async () => {
    const rust = await readFile(new URL("crates/store/src/error.rs", root), "utf8");
    const block = /CODES: &'static \[&'static str\] = &\[([\s\S]*?)\];/.exec(rust)?.[1] ?? "";
    const rustCodes = [...block.matchAll(/"([A-Z_]+)"/g)].map((m) => m[1]);
    expect(rustCodes.length).toBeGreaterThan(5);
    for (const c of rustCodes) expect(Object.values(ErrorCodes)).toContain(c);
  });
});
