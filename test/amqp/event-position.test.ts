import { describe, expect, it } from "vitest";
import { BadFilter, parseSelector, SELECTOR_FILTER, startOf } from "../../ts/amqp/event-hub/position.js";

describe("an Event Hubs reader's start (its selector filter)", () => {
  it("takes what @azure/event-hubs writes for each position", () => {
    // getEventPositionFilter: earliest is offset > '-1', latest offset > '@latest'.
    expect(parseSelector("amqp.annotation.x-opt-offset > '-1'")).toEqual({ kind: "offset", offset: 0 });
    expect(parseSelector("amqp.annotation.x-opt-offset > '@latest'")).toEqual({ kind: "latest" });
    expect(parseSelector("amqp.annotation.x-opt-offset > '41'")).toEqual({ kind: "offset", offset: 42 });
    expect(parseSelector("amqp.annotation.x-opt-offset >= '41'")).toEqual({ kind: "offset", offset: 41 });
    expect(parseSelector("amqp.annotation.x-opt-sequence-number > '7'")).toEqual({
      kind: "offset",
      offset: 8,
    });
    expect(parseSelector("amqp.annotation.x-opt-sequence-number >= '7'")).toEqual({
      kind: "offset",
      offset: 7,
    });
    expect(parseSelector("amqp.annotation.x-opt-enqueued-time > '1700000000000'")).toEqual({
      kind: "time",
      afterMs: 1_700_000_000_000,
      inclusive: false,
    });
  });

  it("reads a source's filter set: none is the earliest, the selector as rhea decodes it", () => {
    expect(startOf(undefined)).toEqual({ kind: "offset", offset: 0 });
    expect(startOf({})).toEqual({ kind: "offset", offset: 0 });
    expect(startOf({ [SELECTOR_FILTER]: "amqp.annotation.x-opt-offset > '2'" })).toEqual({
      kind: "offset",
      offset: 3,
    });
    expect(startOf({ [SELECTOR_FILTER]: { value: "amqp.annotation.x-opt-offset > '2'" } })).toEqual({
      kind: "offset",
      offset: 3,
    });
  });

  it("refuses anything else with a reason", () => {
    for (const text of [
      "amqp.annotation.x-opt-offset > 2",
      "amqp.annotation.x-opt-offset < '2'",
      "amqp.annotation.x-opt-offset = '2'",
      "amqp.annotation.x-opt-offset >= '@latest'",
      "amqp.annotation.x-opt-sequence-number > '@latest'",
      "amqp.annotation.x-opt-enqueued-time > '-1'",
      "amqp.annotation.x-opt-offset > '99999999999999999'",
      "amqp.annotation.x-opt-offset > '1' OR 1=1",
      "amqp.annotation.x-opt-partition-key > '1'",
      `amqp.annotation.x-opt-offset > '${"1".repeat(300)}'`,
      "",
    ])
      expect(() => parseSelector(text), text).toThrow(BadFilter);
    expect(() => startOf({ [SELECTOR_FILTER]: 5 })).toThrow(BadFilter);
    expect(() => startOf({ "apache.org:other": "x" })).toThrow(/not supported/);
    expect(() => startOf("x")).toThrow(BadFilter);
  });
});
