/** The command declarations: parsing against them, the usage made from them, output made safe. */
import { describe, expect, it } from "vitest";
import { type CommandSpec, jsonLine, parse, printable, UsageError, usage } from "../../ts/cli/command.js";
import { allCommands } from "../../ts/cli/commands.js";

const all: CommandSpec[] = await allCommands();

const noop = async () => undefined;

describe("command declarations", () => {
  it("every command's usage names each of its arguments and options, and --json", () => {
    for (const spec of all) {
      const text = usage(spec);
      expect(text.startsWith(`usage: edgehub ${spec.name}`), spec.name).toBe(true);
      for (const a of spec.args ?? []) expect(text, spec.name).toContain(`<${a.name}>`);
      for (const o of spec.options ?? []) expect(text, spec.name).toContain(`--${o.name}`);
      expect(text, spec.name).toContain("--json");
      if (spec.login) expect(text, spec.name).toContain("--data-dir");
    }
  });

  it("parses positionals by name and refuses missing, extra, unknown and required-but-absent ones", () => {
    const spec: CommandSpec = {
      name: "x do",
      summary: "s",
      args: [
        { name: "a", help: "" },
        { name: "b", help: "", optional: true },
      ],
      options: [
        { name: "need", value: "<v>", help: "", required: true },
        { name: "flag", help: "" },
      ],
      run: noop,
    };
    const p = parse(spec, ["one", "--need", "v", "--flag", "--json"]);
    expect(p.args).toEqual({ a: "one" });
    expect([p.opt("need"), p.flag("flag"), p.json, p.opt("absent")]).toEqual(["v", true, true, undefined]);
    const refusals: Array<[string[], string]> = [
      [["--need", "v"], "x do needs <a>"],
      [["1", "2", "3", "--need", "v"], "unexpected argument 3"],
      [["1", "--other"], "--other does not apply to x do"],
      [["1"], "x do needs --need <v>"],
      [["1", "--need"], "--need"],
    ];
    for (const [argv, message] of refusals) {
      const err = (() => {
        try {
          parse(spec, argv);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, argv.join(" ")).toBeInstanceOf(UsageError);
      expect((err as UsageError).message, argv.join(" ")).toContain(message);
      expect((err as UsageError).command).toBe(spec);
    }
    // --help is taken without the required parts.
    expect(parse(spec, ["--help"]).help).toBe(true);
  });

  it("escapes what a terminal would act on, in text and in JSON lines", () => {
    const hostile = "temp\u001b[2J\r\nfake line\u009b31m\u0007";
    const text = printable(hostile);
    expect(text).toBe("temp\\u001b[2J\\u000d\\u000afake line\\u009b31m\\u0007");
    const line = jsonLine({ body: hostile });
    expect(line.endsWith("\n")).toBe(true);
    const raw = [...line.slice(0, -1)].filter(
      (c) => c.charCodeAt(0) < 0x20 || (c.charCodeAt(0) >= 0x7f && c.charCodeAt(0) <= 0x9f),
    );
    expect(raw).toEqual([]);
    expect(JSON.parse(line)).toEqual({ body: hostile });
  });
});
