import { describe, expect, it } from "vitest";
import { parsePublishTopic, parseSubscribeTopic } from "../../ts/protocol/topics.js";

describe("IoT Hub topics", () => {
  it("parses telemetry topics with and without property bags, for devices and modules", () => {
    const cases: [string, unknown][] = [
      ["devices/d1/messages/events", { kind: "telemetry", deviceId: "d1", properties: {} }],
      ["devices/d1/messages/events/", { kind: "telemetry", deviceId: "d1", properties: {} }],
      [
        "devices/d1/messages/events/a=1&%24.mid=m%201&b=x%2Fy&flag//",
        { kind: "telemetry", deviceId: "d1", properties: { a: "1", "$.mid": "m 1", b: "x/y", flag: "" } },
      ],
      [
        "devices/d1/modules/m1/messages/events/$.on=out1",
        { kind: "telemetry", deviceId: "d1", moduleId: "m1", properties: { "$.on": "out1" } },
      ],
      ["devices/d1/messages/eventsx", undefined],
      ["devices//messages/events/", undefined],
      ["devices/d1/modules//messages/events/", undefined],
      ["devices/d1/modules/m1/messages/other/", undefined],
      ["devices/d1/messages/events/a=%E0%A4%A", undefined],
      ["devices/d1", undefined],
      ["other/d1/messages/events/", undefined],
      ["$iothub/twin/GET/?$rid=7", { kind: "twin-get", rid: "7" }],
      ["$iothub/twin/PATCH/properties/reported/?$rid=8&$version=2", { kind: "twin-reported", rid: "8" }],
      ["$iothub/methods/res/200/?$rid=9", { kind: "method-response", status: 200, rid: "9" }],
      ["$iothub/methods/res/20x/?$rid=9", undefined],
      ["$iothub/twin/GET/", undefined],
    ];
    for (const [topic, want] of cases) expect(parsePublishTopic(topic), topic).toEqual(want);
  });

  it("grants only IoT Hub's subscription filters", () => {
    expect(parseSubscribeTopic("devices/d1/messages/devicebound/#")).toEqual({ kind: "c2d", deviceId: "d1" });
    expect(parseSubscribeTopic("devices/d1/modules/m1/inputs/#")).toEqual({
      kind: "module-inputs",
      deviceId: "d1",
      moduleId: "m1",
    });
    expect(parseSubscribeTopic("$iothub/methods/POST/#")).toEqual({ kind: "methods" });
    expect(parseSubscribeTopic("#")).toBeUndefined();
    expect(parseSubscribeTopic("devices/d1/messages/devicebound/+")).toBeUndefined();
  });
});
