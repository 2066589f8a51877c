import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { EVENTS_QUEUE } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";
import {
  BOTH_HEADS,
  connectedDevice,
  deviceClient,
  startHub,
  stopHub,
  type Transport,
} from "../helpers/hub.js";

describe.each<Transport>(["mqtt", "amqp"])(
  "telemetry from the official Azure IoT device SDK over %s/TLS",
  (transport) => {
    it("is stored durably, byte-identical, with application and system properties, before PUBACK or accepted", async () => {
      const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
      const client = await connectedDevice(hub, "sensor-1", transport);
      const bodies = [randomBytes(200), Buffer.from(JSON.stringify({ t: 21.5 })), randomBytes(200 * 1024)];
      for (const [i, body] of bodies.entries()) {
        const m = new Message(body);
        m.messageId = `m-${i}`;
        m.correlationId = "c-1";
        m.contentType = "application/json";
        m.contentEncoding = "utf-8";
        m.properties.add("unit", "°C & more");
        await client.sendEvent(m);
      }
      // sendEvent resolved on PUBACK (AMQP: accepted): the messages are in the store now.
      const stored = await hub.store.read(EVENTS_QUEUE, { maxBytes: 2 ** 30 });
      expect(stored).toHaveLength(3);
      stored.forEach((s, i) => {
        expect(Buffer.compare(s.body, bodies[i] as Buffer)).toBe(0);
        expect(s.properties).toMatchObject({
          unit: "°C & more",
          "$.mid": `m-${i}`,
          "$.cid": "c-1",
          "$.ct": "application/json",
          "$.ce": "utf-8",
          "$.cdid": "sensor-1",
        });
      });
    });

    it("refuses a device with a wrong key and keeps its registry across a restart", async () => {
      const dir = join(await tempDir(), "hub");
      const hub = await startHub(dir, BOTH_HEADS);
      const dev = await hub.registry.createDevice({ deviceId: "d2" });
      const wrong = await deviceClient(hub, "d2", randomBytes(32).toString("base64"), transport);
      wrong.on("error", () => undefined);
      const refused = await wrong.open().then(
        () => undefined,
        (e: Error) => e,
      );
      expect(refused?.name).toBe("UnauthorizedError");
      await stopHub(hub);
      const again = await startHub(dir, BOTH_HEADS);
      const client = await deviceClient(
        again,
        "d2",
        dev.authentication.symmetricKey?.secondaryKey,
        transport,
      );
      await client.open();
      await client.sendEvent(new Message("after restart"));
      expect((await again.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["after restart"]);
    });
  },
);
