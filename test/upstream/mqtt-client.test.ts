import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../ts/config/config.js";
import { ErrorCodes } from "../../ts/errors.js";
import { MqttClient, publishPacket } from "../../ts/upstream/mqtt-client.js";
import { eventually } from "../helpers/fixtures.js";
import { RawParent } from "../helpers/raw-parent.js";

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

  it("with all 32,767 packet ids (the SDK's 1..0x7FFF) awaiting a PUBACK, fails the next publish and subscribe at once, and reuses an id once it is answered", async () => {
    const parent = await RawParent.start(false);
    const client = new MqttClient({
      host: "localhost",
      port: parent.port,
      clientId: "edge",
      keepaliveSecs: 30,
      ca: Buffer.from(parent.ca),
    });
    await new Promise<void>((resolve) => client.once("connect", () => resolve()));
    const results: Array<Error | null | undefined> = [];
    for (let i = 0; i < 0x7fff; i++) {
      results.push(undefined);
      client.publish("t", Buffer.from("x"), (err) => {
        results[i] = err;
      });
    }
    await eventually("32,767 publishes at the parent", () => parent.publishes.length === 0x7fff);
    const ids = parent.publishes.map((p) => p.messageId as number);
    expect(new Set(ids).size).toBe(0x7fff);
    expect(Math.min(...ids)).toBe(1);
    expect(Math.max(...ids)).toBe(0x7fff);
    expect(results.every((r) => r === undefined)).toBe(true);

    // Every id is taken: the next publish and subscribe are refused, not looped on.
    let full: Error | null | undefined;
    client.publish("t", Buffer.from("y"), (err) => {
      full = err;
    });
    expect(full?.message).toMatch(/packet ids/);
    let subscribed: Error | null | undefined;
    client.subscribe([{ topic: "s", qos: 0 }], (err) => {
      subscribed = err;
    });
    expect(subscribed?.message).toMatch(/packet ids/);

    // One PUBACK frees one id, and the next publish takes exactly that one.
    const freed = parent.publishes[1000]?.messageId as number;
    parent.send({ cmd: "puback", messageId: freed });
    await eventually("the PUBACK seen", () => results[1000] === null);
    client.publish("t", Buffer.from("z"), () => undefined);
    await eventually("the next publish at the parent", () => parent.publishes.length === 0x8000);
    expect(parent.publishes.at(-1)?.messageId).toBe(freed);
    client.destroy("done");
  });

  it("refuses a parent.window the packet ids cannot carry, with CONFIG_INVALID naming the key", () => {
    const parent = (window: number) => ({
      parent: {
        hostname: "localhost",
        deviceId: "edge",
        sharedAccessKey: Buffer.alloc(32).toString("base64"),
        window,
      },
    });
    expect(loadConfig(parent(16_384)).parent?.window).toBe(16_384);
    for (const window of [16_385, 32_768, 1_000_000]) {
      let err: unknown;
      try {
        loadConfig(parent(window));
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({
        code: ErrorCodes.CONFIG_INVALID,
        message: expect.stringMatching(/parent\.window/),
      });
    }
  });
});
