import { fc, test } from "@fast-check/vitest";
import { describe, expect } from "vitest";
import type { StoredMessage } from "../../ts/index.js";
import { invalidTopic, topicFor, topicLevel } from "../../ts/upstream/mqtt-uplink.js";

const message = (deviceId: string, moduleId?: string): StoredMessage =>
  ({
    offset: 0,
    enqueuedAt: 0,
    expiresAt: null,
    body: Buffer.alloc(0),
    properties: moduleId === undefined ? { "$.cdid": deviceId } : { "$.cdid": deviceId, "$.cmid": moduleId },
  }) as StoredMessage;

/** Any text, with the characters MQTT topics care about drawn often. */
const text = fc.string({
  unit: fc.oneof(
    fc.constantFrom("+", "#", "/", "%", "$", "\u0000", "\u007f", "\u0085"),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  ),
  minLength: 1,
});

describe("topic levels towards a broker", () => {
  test.prop([text])(
    "a value is one level, free of wildcards and controls, and decodes back to itself",
    (v) => {
      const level = topicLevel(v);
      expect(level).not.toMatch(/[+#/\p{Cc}]/u);
      expect(decodeURIComponent(level)).toBe(v);
    },
  );

  test.prop([text, fc.option(text, { nil: undefined })])(
    "a filled template has exactly the template's levels and is a valid topic name, never a `$` topic",
    (deviceId, moduleId) => {
      const topic = topicFor("{deviceId}/x/{moduleId}", message(deviceId, moduleId));
      expect(topic.split("/")).toHaveLength(moduleId === undefined ? 2 : 3);
      expect(topic.startsWith("$")).toBe(false);
      expect(invalidTopic(topic)).toBeUndefined();
    },
  );
});
