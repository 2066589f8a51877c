import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { Client, Message } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeHub, EVENTS_QUEUE, silentLogger } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";

const hubs: EdgeHub[] = [];
afterEach(async () => {
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

async function startHub(dataDir: string): Promise<EdgeHub> {
  const hub = await EdgeHub.start(
    { hostname: "localhost", dataDir, listen: { host: "127.0.0.1", mqtts: 0 } },
    silentLogger,
  );
  hubs.push(hub);
  return hub;
}

function connectionString(hub: EdgeHub, deviceId: string, key: string): string {
  return `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=localhost:${hub.ports.mqtts}`;
}

describe("telemetry from the official Azure IoT device SDK over MQTT/TLS", () => {
  it("is stored durably, byte-identical, with application and system properties, before PUBACK", async () => {
    const dir = await tempDir();
    const hub = await startHub(join(dir, "hub"));
    const dev = await hub.registry.createDevice({ deviceId: "sensor-1" });
    const client = Client.fromConnectionString(
      connectionString(hub, "sensor-1", dev.authentication.symmetricKey?.primaryKey ?? ""),
      Mqtt,
    );
    await client.setOptions({ ca: hub.caCertificate });
    await client.open();
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
    // sendEvent resolved on PUBACK: the messages are in the store now.
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
    await client.close();
  });

  it("refuses a device with a wrong key and keeps its registry across a restart", async () => {
    const dir = await tempDir();
    const hub = await startHub(join(dir, "hub"));
    const dev = await hub.registry.createDevice({ deviceId: "d2" });
    const wrong = Client.fromConnectionString(
      connectionString(hub, "d2", randomBytes(32).toString("base64")),
      Mqtt,
    );
    await wrong.setOptions({ ca: hub.caCertificate });
    wrong.on("error", () => undefined);
    const refused = await wrong.open().then(
      () => undefined,
      (e: Error) => e,
    );
    expect(refused?.name).toBe("UnauthorizedError");
    await wrong.close();
    await hub.close();
    hubs.pop();
    const again = await startHub(join(dir, "hub"));
    const client = Client.fromConnectionString(
      connectionString(again, "d2", dev.authentication.symmetricKey?.secondaryKey ?? ""),
      Mqtt,
    );
    await client.setOptions({ ca: again.caCertificate });
    await client.open();
    await client.sendEvent(new Message("after restart"));
    expect((await again.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["after restart"]);
    await client.close();
  });
});
