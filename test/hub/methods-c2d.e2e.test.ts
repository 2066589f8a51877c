import { join } from "node:path";
import type { Message } from "azure-iot-device";
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, startHub as start, stopHub, type Transport } from "../helpers/hub.js";
import { c2dListener } from "../helpers/mqtt-raw.js";
import { call } from "../helpers/service.js";

describe.each<Transport>(["mqtt", "amqp"])(
  "direct methods with the official device SDK over %s",
  (transport) => {
    it("returns the device's answer, 404 when it is not there, 504 when it does not answer", async () => {
      const hub = await start(join(await tempDir(), "hub"), BOTH_HEADS);
      await hub.registry.createDevice({ deviceId: "pump" });
      expect((await hub.methods.invoke("pump", { methodName: "reboot" })).status).toBe(404);
      // A call with a connect timeout waits for the device to connect and listen.
      const early = hub.methods.invoke("pump", {
        methodName: "reboot",
        payload: { delay: 3 },
        connectTimeoutInSeconds: 60,
        responseTimeoutInSeconds: 5,
      });
      const client = await connectedDevice(hub, "pump", transport);
      client.onDeviceMethod("reboot", (req, res) => {
        res.send(200, { ok: true, got: req.payload }, () => undefined);
      });
      client.onDeviceMethod("hang", () => undefined);
      expect(await early).toEqual({ status: 200, payload: { ok: true, got: { delay: 3 } } });
      const hung = await hub.methods.invoke("pump", { methodName: "hang", responseTimeoutInSeconds: 5 });
      expect(hung.status).toBe(504);
      // Through the service API: the connect timeout is taken from the body, checked, and spent
      // before a device that never connects is reported not online.
      const service = { methodName: "reboot", connectTimeoutInSeconds: 1 };
      expect(await call(hub, "POST", "/twins/pump/methods", service)).toMatchObject({ status: 200 });
      await hub.registry.createDevice({ deviceId: "absent" });
      const waited = Date.now();
      expect(await call(hub, "POST", "/twins/absent/methods", service)).toMatchObject({ status: 404 });
      expect(Date.now() - waited).toBeGreaterThanOrEqual(900);
      const bad = await call(hub, "POST", "/twins/pump/methods", {
        methodName: "x",
        connectTimeoutInSeconds: "soon",
      });
      expect(bad.status).toBe(400);
    }, 20_000);
  },
);

describe("cloud-to-device messages", () => {
  it("are queued while the device is away, kept across a restart, delivered in order once, removed on PUBACK", async () => {
    const dir = join(await tempDir(), "hub");
    const hub = await start(dir);
    await hub.registry.createDevice({ deviceId: "lamp" });
    for (let i = 0; i < 3; i++) {
      await hub.delivery.sendC2D("lamp", {
        body: Buffer.from(`cmd-${i}`),
        messageId: `mid-${i}`,
        properties: { seq: String(i) },
      });
    }
    await stopHub(hub);
    const again = await start(dir);
    const client = await connectedDevice(again, "lamp");
    const got: Message[] = [];
    client.on("message", (m: Message) => {
      got.push(m);
      client.complete(m, () => undefined);
    });
    await eventually("three C2D messages", () => got.length === 3);
    expect(got.map((m) => m.data.toString())).toEqual(["cmd-0", "cmd-1", "cmd-2"]);
    expect(got.map((m) => m.messageId)).toEqual(["mid-0", "mid-1", "mid-2"]);
    expect(got[1]?.properties.getValue("seq")).toBe("1");
    await eventually(
      "acked",
      async () => ((await again.store.stats()).queues.find((q) => q.name === "$c2d/lamp")?.count ?? 0) === 0,
    );
    await again.delivery.sendC2D("lamp", { body: Buffer.from("live") });
    await eventually("live message", () => got.length === 4);
    expect(got[3]?.data.toString()).toBe("live");
  });

  it("left unacknowledged when a connection drops go to the next connection", async () => {
    const hub = await start(join(await tempDir(), "hub"));
    const device = await hub.registry.createDevice({ deviceId: "valve" });
    const raw = await c2dListener(hub, "valve", device.authentication.symmetricKey?.primaryKey ?? "", 5);
    const first = await raw.publishes(5);
    expect(first.map((p) => p.body)).toEqual(["cmd-0", "cmd-1", "cmd-2", "cmd-3", "cmd-4"]);
    // Only the first is acknowledged; the rest are in flight when the connection drops.
    raw.send({ cmd: "puback", messageId: first[0]?.messageId } as Packet);
    await eventually(
      "first acknowledged",
      async () => ((await hub.store.stats()).queues.find((q) => q.name === "$c2d/valve")?.count ?? 0) === 4,
    );
    raw.end();
    await raw.closed;
    const client = await connectedDevice(hub, "valve");
    const got: string[] = [];
    client.on("message", (m: Message) => {
      got.push(m.data.toString());
      client.complete(m, () => undefined);
    });
    await eventually("the four unacknowledged again", () => got.length === 4);
    expect(got).toEqual(["cmd-1", "cmd-2", "cmd-3", "cmd-4"]);
  });

  it("in flight when the device unsubscribes and subscribes again are not sent twice on that connection", async () => {
    const hub = await start(join(await tempDir(), "hub"));
    const device = await hub.registry.createDevice({ deviceId: "pump" });
    const raw = await c2dListener(hub, "pump", device.authentication.symmetricKey?.primaryKey ?? "", 3);
    const first = await raw.publishes(3);
    raw.send({ cmd: "unsubscribe", messageId: 2, unsubscriptions: [raw.topic] } as Packet);
    // The first PUBACK wakes the drain, which finds the device no longer listening and ends.
    raw.send({ cmd: "puback", messageId: first[0]?.messageId } as Packet);
    await eventually(
      "first acknowledged",
      async () => ((await hub.store.stats()).queues.find((q) => q.name === "$c2d/pump")?.count ?? 0) === 2,
    );
    raw.send({ cmd: "subscribe", messageId: 3, subscriptions: [{ topic: raw.topic, qos: 1 }] } as Packet);
    for (const p of first.slice(1)) raw.send({ cmd: "puback", messageId: p.messageId } as Packet);
    await hub.delivery.sendC2D("pump", { body: Buffer.from("cmd-3") });
    const [next] = await raw.publishes(1);
    expect(first.map((p) => p.body)).toEqual(["cmd-0", "cmd-1", "cmd-2"]);
    expect(next?.body).toBe("cmd-3");
    raw.end();
  });
});
