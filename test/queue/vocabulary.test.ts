import { describe, expect, it } from "vitest";
import { parseSubscribeTopic } from "../../ts/protocol/topics.js";
import {
  deliveryQueue,
  ownerOf,
  PRIORITIES,
  priorityQueue,
  rankOf,
  TOPICS,
  UPSTREAM_QUEUE,
} from "../../ts/vocabulary.js";

describe("vocabulary: queue names", () => {
  it("formats and parses delivery queues with their priorities", () => {
    expect(deliveryQueue("d1")).toBe("$c2d/d1");
    expect(deliveryQueue("d1/m1")).toBe("$inputs/d1/m1");
    expect(ownerOf(priorityQueue(deliveryQueue("d1/m1"), 3))).toEqual({ clientId: "d1/m1", rank: 3 });
    expect(ownerOf(deliveryQueue("d1"))).toEqual({ clientId: "d1", rank: PRIORITIES });
    expect(ownerOf("$c2d/d1/p10")).toBeUndefined();
    expect(ownerOf("$c2d/d1/x/p1")).toBeUndefined();
    expect(ownerOf(UPSTREAM_QUEUE)).toBeUndefined();
    expect(rankOf(priorityQueue(UPSTREAM_QUEUE, 0))).toBe(0);
    expect(rankOf(UPSTREAM_QUEUE)).toBe(PRIORITIES);
  });
});

describe("vocabulary: IoT Hub topic templates", () => {
  it("parses what it formats", () => {
    const values = { deviceId: "d1", moduleId: "m1", input: "in1", bag: "a=1&%24.mid=x" };
    const topic = TOPICS.moduleInput.format(values);
    expect(topic).toBe("devices/d1/modules/m1/inputs/in1/a=1&%24.mid=x");
    expect(TOPICS.moduleInput.parse(topic)).toEqual(values);
    expect(TOPICS.c2d.parse("devices/d1/messages/devicebound/")).toEqual({ deviceId: "d1", bag: "" });
    expect(TOPICS.methodResponse.format({ status: "200", query: "$rid=7" })).toBe(
      "$iothub/methods/res/200/?$rid=7",
    );
    expect(TOPICS.twinResponse.parse("$iothub/twin/res/204/?$rid=1&$version=3")).toEqual({
      status: "204",
      query: "$rid=1&$version=3",
    });
  });

  it("refuses a value that would change the topic's levels, and topics of another form", () => {
    expect(() => TOPICS.c2d.format({ deviceId: "d1/messages/events", bag: "" })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => TOPICS.c2dFilter.format({ deviceId: "" })).toThrow(/not one topic level/);
    expect(TOPICS.c2dFilter.parse("devices//messages/devicebound/#")).toBeUndefined();
    expect(TOPICS.c2dFilter.parse("devices/a/b/messages/devicebound/#")).toBeUndefined();
    expect(TOPICS.c2dFilter.parse("devices/a/messages/devicebound/#/x")).toBeUndefined();
    expect(TOPICS.methodsFilter.parse("$iothub/methods/POST/#")).toEqual({});
    expect(TOPICS.methodsFilter.parse("$iothub/methods/POST/#x")).toBeUndefined();
  });

  it("is the table the MQTT head reads subscriptions with", () => {
    expect(parseSubscribeTopic(TOPICS.moduleInputsFilter.format({ deviceId: "d", moduleId: "m" }))).toEqual({
      kind: "module-inputs",
      deviceId: "d",
      moduleId: "m",
    });
    expect(parseSubscribeTopic("devices/d/modules//inputs/#")).toBeUndefined();
    expect(parseSubscribeTopic("$iothub/twin/PATCH/properties/desired/#")).toEqual({ kind: "twin-desired" });
    // A parsed record has no prototype: `__proto__` is a value like any other.
    const parsed = TOPICS.c2dFilter.parse("devices/__proto__/messages/devicebound/#");
    expect(parsed?.deviceId).toBe("__proto__");
  });
});
