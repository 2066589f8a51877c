import { join } from "node:path";
import type { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedDevice, startHub as start, stopHub } from "../helpers/hub.js";
import { call } from "../helpers/service.js";

describe("direct methods with the official device SDK", () => {
  it("returns the device's answer, 404 when it is not there, 504 when it does not answer", async () => {
    const hub = await start(join(await tempDir(), "hub"));
    await hub.registry.createDevice({ deviceId: "pump" });
    expect((await hub.methods.invoke("pump", { methodName: "reboot" })).status).toBe(404);
    // A call with a connect timeout waits for the device to connect and listen.
    const early = hub.methods.invoke("pump", {
      methodName: "reboot",
      payload: { delay: 3 },
      connectTimeoutInSeconds: 60,
      responseTimeoutInSeconds: 5,
    });
    const client = await connectedDevice(hub, "pump");
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
});

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
});
