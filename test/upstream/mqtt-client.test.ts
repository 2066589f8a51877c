import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { publishPacket } from "../../ts/upstream/mqtt-client.js";

describe("upstream MQTT client", () => {
  it("builds the same QoS 1 PUBLISH bytes as mqtt-packet, across remaining-length sizes", () => {
    for (const [topicLen, payloadLen] of [
      [1, 0],
      [10, 100],
      [20, 105],
      [30, 16_300],
      [40, 16_500],
      [100, 256 * 1024],
      [3, 2_097_200],
    ] as const) {
      const topic = `t/${"é".repeat(Math.max(0, topicLen - 2))}`;
      const payload = Buffer.alloc(payloadLen, 7);
      const id = (topicLen * 977) % 65535 || 1;
      const want = mqtt.generate({
        cmd: "publish",
        topic,
        payload,
        qos: 1,
        messageId: id,
        retain: false,
        dup: false,
      });
      expect(publishPacket(topic, id, payload).equals(want), `${topicLen}/${payloadLen}`).toBe(true);
    }
  });
});
