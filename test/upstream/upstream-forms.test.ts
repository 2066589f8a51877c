/**
 * The fixtures of Microsoft's upstream wire forms (test/fixtures/upstream-forms, written from
 * Azure/iotedge and the C# device SDK, see docs/upstream-forms.md) stay loadable and cited:
 * every file parses, every form names its source file and member, and the example tokens
 * are really signed as their form says. test/upstream/conformance.e2e.test.ts compares
 * edgehub's wire output to these forms and enforces their verdicts; this one only keeps the
 * fixtures honest.
 */
import { createHmac } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";

const DIR = path.join(import.meta.dirname, "..", "fixtures", "upstream-forms");

/** The fixture key the example tokens are signed with (not a secret). */
const FIXTURE_KEY = "ZWRnZWh1Yi1maXh0dXJlLWtleS1ub3Qtc2VjcmV0LTAwMDA=";

/** `owner/repo:path#Member`, from one of the repositories the forms are read from. */
const SOURCE =
  /^(Azure\/iotedge|Azure\/azure-iot-sdk-csharp|Azure\/iot-identity-service):[A-Za-z0-9_./-]+\.(cs|rs|csproj)#\S.*$/;
const VERDICTS = new Set(["same", "differs", "unknown"]);

interface Form {
  id: string;
  form: string;
  example: unknown;
  source: string;
  alsoFrom?: string[];
  edgehub: { sends: unknown; where: string };
  verdict: string;
  note?: string;
}

interface FixtureFile {
  area: string;
  about: string;
  forms: Form[];
}

const files = readdirSync(DIR).filter((f) => f.endsWith(".json"));

function load(file: string): FixtureFile {
  return JSON.parse(readFileSync(path.join(DIR, file), "utf8")) as FixtureFile;
}

/** Every string anywhere in a value. */
function strings(v: unknown): string[] {
  if (typeof v === "string") return [v];
  if (Array.isArray(v)) return v.flatMap(strings);
  if (v !== null && typeof v === "object") return Object.values(v).flatMap(strings);
  return [];
}

describe("upstream wire-form fixtures", () => {
  test("cover every area the doc has a table for", () => {
    expect(files.map((f) => f.replace(/\.json$/, "")).sort()).toEqual(
      ["c2d", "connect", "identity", "methods", "refusals", "scope", "telemetry", "twin"].sort(),
    );
  });

  test.each(files)("%s: parses, and every form is complete and cites its source", (file) => {
    const fixture = load(file);
    expect(fixture.area).toBe(file.replace(/\.json$/, ""));
    expect(fixture.about.length).toBeGreaterThan(0);
    expect(fixture.forms.length).toBeGreaterThan(0);
    const ids = new Set<string>();
    for (const f of fixture.forms) {
      expect(f.id, file).toMatch(/^[a-z0-9.-]+$/);
      expect(ids.has(f.id), `${file}: ${f.id} twice`).toBe(false);
      ids.add(f.id);
      expect(typeof f.form, `${file}#${f.id}`).toBe("string");
      expect(Object.hasOwn(f, "example"), `${file}#${f.id} has no example`).toBe(true);
      expect(f.source, `${file}#${f.id}`).toMatch(SOURCE);
      for (const s of f.alsoFrom ?? []) expect(s, `${file}#${f.id}`).toMatch(SOURCE);
      expect(Object.hasOwn(f.edgehub, "sends"), `${file}#${f.id}`).toBe(true);
      expect(f.edgehub.where.length, `${file}#${f.id}`).toBeGreaterThan(0);
      expect(VERDICTS.has(f.verdict), `${file}#${f.id}: ${f.verdict}`).toBe(true);
    }
  });

  test("example SAS tokens are signed over their url-encoded resource with the fixture key", () => {
    const tokens = files
      .flatMap((file) => load(file).forms.flatMap((f) => strings(f.example).concat(strings(f.edgehub.sends))))
      .filter((s) => /^SharedAccessSignature sr=[^&]+&sig=[^&.]+&se=\d+$/.test(s));
    expect(tokens.length).toBeGreaterThan(0);
    for (const token of tokens) {
      const fields = new URLSearchParams(token.slice("SharedAccessSignature ".length));
      // The signed text is the resource as the token carries it (still url-encoded).
      const sr = /sr=([^&]+)/.exec(token)?.[1] ?? "";
      const expected = createHmac("sha256", Buffer.from(FIXTURE_KEY, "base64"))
        .update(`${sr}\n${fields.get("se")}`)
        .digest("base64");
      expect(fields.get("sig"), token).toBe(expected);
    }
  });

  test("the workload sign example signs exactly the $edgeHub token's resource and expiry", () => {
    const sign = load("identity.json").forms.find((f) => f.id === "workload.sign");
    const token = load("connect.json").forms.find((f) => f.id === "password.in-scope");
    if (!sign || !token) throw new Error("workload.sign or password.in-scope is missing");
    const data = (sign.example as { data: string }).data;
    const [, sr, se] = /sr=([^&]+)&sig=[^&]+&se=(\d+)/.exec(String(token.example)) ?? [];
    expect(Buffer.from(data, "base64").toString("utf8")).toBe(`${sr}\n${se}`);
  });
});
