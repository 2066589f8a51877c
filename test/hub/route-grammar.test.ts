import { describe, expect, it } from "vitest";
import { type ConditionInput, matches, parseCondition } from "../../ts/routing/condition.js";
import { parseRoute, RouteSyntaxError } from "../../ts/routing/route-grammar.js";

const msg = (over: Partial<ConditionInput> = {}): ConditionInput => ({
  properties: { alert: "true", temperature: "31.5", site: "Plant-7" },
  system: { connectionDeviceId: "sensor-1", contentType: "application/json", contentEncoding: "utf-8" },
  body: Buffer.from(
    JSON.stringify({ temperature: 31.5, machine: { status: "hot", pressure: 2 }, tags: ["a"] }),
  ),
  ...over,
});

function holds(condition: string, input = msg()): boolean {
  return matches(parseCondition(condition), input);
}

describe("route grammar", () => {
  it("parses IoT Edge's sources and sinks, case-insensitively", () => {
    expect(parseRoute("FROM /messages/* INTO $upstream")).toEqual({
      source: { kind: "messages", scope: "all" },
      condition: undefined,
      sink: { kind: "upstream" },
    });
    expect(
      parseRoute(
        'from /messages/modules/filter/outputs/output1 into BrokeredEndpoint("/modules/alerts/inputs/input1")',
      ),
    ).toEqual({
      source: { kind: "messages", scope: "modules", moduleId: "filter", output: "output1" },
      condition: undefined,
      sink: { kind: "moduleInput", moduleId: "alerts", input: "input1" },
    });
    expect(parseRoute("FROM /messages/modules/filter/* INTO $upstream").source).toEqual({
      kind: "messages",
      scope: "modules",
      moduleId: "filter",
    });
    expect(parseRoute("FROM /messages/modules/filter/outputs/* INTO $upstream").source).toMatchObject({
      output: "*",
    });
    expect(parseRoute("FROM /messages/modules/* INTO $upstream").source).toEqual({
      kind: "messages",
      scope: "modules",
    });
    expect(parseRoute("FROM /twinChangeNotifications INTO $upstream").source).toEqual({
      kind: "twinChangeNotifications",
    });
    expect(parseRoute("FROM /* INTO $upstream").source).toEqual({ kind: "all" });
    expect(parseRoute('FROM /messages/* INTO DeviceEndpoint("/devices/display-3")').sink).toEqual({
      kind: "device",
      deviceId: "display-3",
    });
    const r = parseRoute(
      "FROM /messages/* WHERE alert = 'true' AND $connectionDeviceId = 'sensor-1' INTO $upstream",
    );
    expect(r.condition && matches(r.condition, msg())).toBe(true);
  });

  it("refuses bad routes with the column and the reason", () => {
    const cases: [string, number, RegExp][] = [
      ["INTO $upstream", 1, /starts with FROM/],
      ["FROM /messages/*", 17, /INTO <sink> is missing/],
      ["FROM /messages/x INTO $upstream", 6, /unknown source "\/messages\/x"/],
      ["FROM /messages/* INTO $downstream", 23, /unknown sink "\$downstream"/],
      ["FROM /messages/* INTO ", 23, /sink after INTO is missing/],
      ["FROM /messages/* WHERE INTO $upstream", 24, /condition after WHERE is missing/],
      ["FROM /messages/* WHERE a = 'x INTO $upstream", 28, /unterminated string/],
      ["FROM /messages/* WHERE NOPE(a) INTO $upstream", 24, /unknown function NOPE/],
      ["FROM /messages/* WHERE STARTS_WITH(a) INTO $upstream", 24, /STARTS_WITH takes 2 arguments, got 1/],
      ["FROM /messages/* WHERE a = 1 b INTO $upstream", 30, /unexpected "b"/],
      ["FROM /messages/* WHERE (a = 1 INTO $upstream", 31, /expected \)/],
      ["FROM /messages/* WHERE a = # INTO $upstream", 28, /unexpected "#"/],
      ["FROM /messages/* WHERE a = INTO $upstream", 28, /ends too early/],
    ];
    for (const [route, column, reason] of cases) {
      let err: unknown;
      try {
        parseRoute(route);
      } catch (e) {
        err = e;
      }
      expect(err, route).toBeInstanceOf(RouteSyntaxError);
      expect((err as RouteSyntaxError).code, route).toBe("ROUTE_INVALID");
      expect((err as RouteSyntaxError).message, route).toMatch(reason);
      expect((err as RouteSyntaxError).position, route).toBe(column);
    }
  });

  it("evaluates conditions over properties, system properties and JSON bodies, three-valued", () => {
    expect(holds("alert = 'true'")).toBe(true);
    expect(holds("site = \"Plant-7\" AND NOT (alert = 'false')")).toBe(true);
    expect(holds("$connectionDeviceId = 'sensor-1' OR missing = 'x'")).toBe(true);
    expect(holds("$connectionModuleId = 'm'")).toBe(false);
    expect(holds("$body.temperature > 30 AND $body.machine.status = 'hot'")).toBe(true);
    expect(holds("$body.machine.pressure * 2 + 1 = 5 AND $body.temperature % 2 = 1.5")).toBe(true);
    expect(holds("-$body.machine.pressure < 0")).toBe(true);
    // App properties are strings: compared with a number they are undefined, unless converted.
    expect(holds("temperature > 30")).toBe(false);
    expect(holds("NOT (temperature > 30)")).toBe(false);
    expect(holds("AS_NUMBER(temperature) > 30")).toBe(true);
    // Undefined propagates through comparisons and NOT, and AND/OR decide when they can.
    expect(holds("missing = 'x'")).toBe(false);
    expect(holds("NOT (missing = 'x')")).toBe(false);
    expect(holds("missing != 'x'")).toBe(false);
    expect(holds("missing = 'x' OR alert = 'true'")).toBe(true);
    expect(holds("NOT (missing = 'x' AND alert = 'false')")).toBe(true);
    expect(holds("NOT IS_DEFINED(missing) AND IS_DEFINED($body.tags)")).toBe(true);
    expect(holds("$body.machine <> 'x'")).toBe(false);
    // A body that is not JSON (or not declared as JSON) has no fields.
    expect(holds("IS_DEFINED($body.temperature)", msg({ system: { contentType: "text/plain" } }))).toBe(
      false,
    );
    expect(holds("IS_DEFINED($body.temperature)", msg({ body: Buffer.from("{not json") }))).toBe(false);
  });

  it("has IoT Hub's functions", () => {
    const yes = [
      "STARTS_WITH(site, 'Plant') AND ENDS_WITH(site, '-7') AND CONTAINS(site, 'nt-')",
      "LOWER(site) = 'plant-7' AND UPPER(site) = 'PLANT-7' AND LENGTH(site) = 7",
      "SUBSTRING(site, 6) = '7' AND SUBSTRING(site, 0, 5) = 'Plant' AND INDEX_OF(site, '-') = 5",
      "CONCAT(site, '/', $connectionDeviceId) = 'Plant-7/sensor-1'",
      "LTRIM('  a') = 'a' AND RTRIM('a  ') = 'a'",
      "IS_STRING(site) AND IS_NUMBER($body.temperature) AND IS_OBJECT($body.machine) AND IS_ARRAY($body.tags)",
      "IS_BOOL(true) AND IS_NULL(null) AND IS_PRIMITIVE(1) AND NOT IS_PRIMITIVE($body.machine)",
      "ABS(-2) = 2 AND CEILING(1.2) = 2 AND FLOOR(1.8) = 1 AND SIGN(-3) = -1",
      "POWER(2, 10) = 1024 AND SQRT(16) = 4 AND SQUARE(3) = 9 AND LOG10(100) = 2 AND EXP(0) = 1 AND LOG(1) = 0",
      "AS_NUMBER('12') = 12 AND NOT IS_DEFINED(AS_NUMBER('x'))",
    ];
    for (const c of yes) expect(holds(c), c).toBe(true);
    expect(holds("STARTS_WITH($body.temperature, '3')"), "wrong type is undefined").toBe(false);
    expect(holds("1 / 0 = 1 OR NOT IS_DEFINED(1 / 0)")).toBe(true);
  });
});
