/**
 * Caps on pending direct method calls, through the real hub: the official azure-iothub
 * service Client calls, official device SDK clients answer (or hold their answers), a
 * module calls with its own token as ModuleClient does. Past a cap the caller gets IoT
 * Hub's 429 ThrottleBacklogLimitExceeded at once; other targets and callers are served;
 * once the pending calls finish, calls are accepted again; `GET /edge/status` counts it all.
 */
import { join } from "node:path";
import type { DeviceMethodResponse } from "azure-iot-device";
import type { Client as ServiceClient } from "azure-iothub";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import type { MethodStats } from "../../ts/methods/direct-methods.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedDevice, startHub } from "../helpers/hub.js";
import { call, callAsModule, sdkClient } from "../helpers/service.js";

async function methodStatus(hub: EdgeHub): Promise<MethodStats> {
  const reply = await call(hub, "GET", "/edge/status");
  expect(reply.status).toBe(200);
  return (reply.body as { methods: MethodStats }).methods;
}

/**
 * An SDK device that answers `ping` at once and holds every `hold` until released; resolves
 * once the hub delivers its calls (a first ping, waiting for it to listen, was answered).
 */
async function answeringDevice(hub: EdgeHub, service: ServiceClient, deviceId: string) {
  const client = await connectedDevice(hub, deviceId);
  const held: DeviceMethodResponse[] = [];
  client.onDeviceMethod("ping", (req, res) => res.send(200, { pong: req.payload }, () => undefined));
  client.onDeviceMethod("hold", (_req, res) => held.push(res));
  const first = await service.invokeDeviceMethod(deviceId, {
    methodName: "ping",
    payload: 0,
    connectTimeoutInSeconds: 10,
  });
  expect(first.result).toEqual({ status: 200, payload: { pong: 0 } });
  return {
    held,
    release: () => {
      for (const res of held.splice(0)) res.send(200, "released", () => undefined);
    },
  };
}

/** What a refused SDK call failed with: the SDK's error class, the HTTP status, IoT Hub's error code. */
async function refusal(p: Promise<unknown>): Promise<{ name: string; status: number; errorCode: string }> {
  const err = (await p.then(
    () => {
      throw new Error("the call was accepted");
    },
    (e: unknown) => e,
  )) as Error & { response?: { statusCode?: number }; responseBody?: string };
  return {
    name: err.name,
    status: err.response?.statusCode ?? 0,
    errorCode: /ErrorCode:([A-Za-z]+)/.exec(err.responseBody ?? "")?.[1] ?? "",
  };
}

const THROTTLED = { name: "ThrottlingError", status: 429, errorCode: "ThrottleBacklogLimitExceeded" };

describe("pending direct method calls", () => {
  it("are capped per target: a flooded device's next call gets 429 while another device is served, and calls are accepted once they finish", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), {
      limits: { maxPendingMethodCallsPerTarget: 2 },
    });
    const service = sdkClient(hub);
    const slow = await answeringDevice(hub, service, "slow");
    const fast = await answeringDevice(hub, service, "fast");
    const pending = [1, 2].map((i) => service.invokeDeviceMethod("slow", { methodName: "hold", payload: i }));
    await eventually("two calls held by the device", () => slow.held.length === 2);
    expect(await refusal(service.invokeDeviceMethod("slow", { methodName: "hold", payload: 3 }))).toEqual(
      THROTTLED,
    );
    // Another target is not held up by the flooded one.
    const other = await service.invokeDeviceMethod("fast", { methodName: "ping", payload: "x" });
    expect(other.result).toEqual({ status: 200, payload: { pong: "x" } });
    expect(fast.held).toHaveLength(0);
    expect(await methodStatus(hub)).toMatchObject({
      pending: 2,
      refused: { perTarget: 1, perCaller: 0, bytes: 0 },
    });
    slow.release();
    expect((await Promise.all(pending)).map((r) => r.result)).toEqual([
      { status: 200, payload: "released" },
      { status: 200, payload: "released" },
    ]);
    // The slots are free again.
    const again = await service.invokeDeviceMethod("slow", { methodName: "ping", payload: 4 });
    expect(again.result).toEqual({ status: 200, payload: { pong: 4 } });
    expect(await methodStatus(hub)).toMatchObject({ pending: 0, pendingBytes: 0 });
  }, 30_000);

  it("are capped per caller: the service past its cap gets 429 while a module calling the same device is served", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), {
      limits: { maxPendingMethodCallsPerCaller: 2 },
    });
    const edge = await hub.registry.createDevice({ deviceId: "edge", capabilities: { iotEdge: true } });
    await hub.registry.createDevice({ deviceId: "child", deviceScope: edge.deviceScope as string });
    const mod = await hub.registry.createModule({ deviceId: "edge", moduleId: "logic" });
    const service = sdkClient(hub);
    const child = await answeringDevice(hub, service, "child");
    // A call waiting for its device to connect is pending too.
    await hub.registry.createDevice({ deviceId: "absent" });
    const waiting = service.invokeDeviceMethod("absent", { methodName: "hold", connectTimeoutInSeconds: 5 });
    const held = service.invokeDeviceMethod("child", { methodName: "hold" });
    await eventually("one call held by the device", () => child.held.length === 1);
    await eventually("two calls pending", async () => (await methodStatus(hub)).pending === 2);
    expect(await refusal(service.invokeDeviceMethod("child", { methodName: "ping" }))).toEqual(THROTTLED);
    // A module of the child's edge, with its own token, is another caller.
    const byModule = await callAsModule(
      hub,
      "POST",
      "/twins/child/methods",
      { methodName: "ping", payload: "m" },
      { deviceId: "edge", moduleId: "logic", key: mod.authentication.symmetricKey?.primaryKey ?? "" },
    );
    expect(byModule).toEqual({ status: 200, body: { status: 200, payload: { pong: "m" } } });
    expect((await methodStatus(hub)).refused).toEqual({ perTarget: 0, perCaller: 1, bytes: 0 });
    child.release();
    expect((await held).result).toEqual({ status: 200, payload: "released" });
    expect(await refusal(waiting)).toMatchObject({ status: 404 });
    const again = await service.invokeDeviceMethod("child", { methodName: "ping", payload: 1 });
    expect(again.result).toEqual({ status: 200, payload: { pong: 1 } });
  }, 30_000);

  it("are capped in payload bytes held: a call whose payload would pass the cap gets 429, a small one is served", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), { limits: { maxPendingMethodBytes: 1000 } });
    const service = sdkClient(hub);
    const dev = await answeringDevice(hub, service, "dev");
    const big = "x".repeat(600);
    const held = service.invokeDeviceMethod("dev", { methodName: "hold", payload: big });
    await eventually("the big call held", () => dev.held.length === 1);
    expect((await methodStatus(hub)).pendingBytes).toBe(JSON.stringify(big).length + "hold".length);
    expect(await refusal(service.invokeDeviceMethod("dev", { methodName: "hold", payload: big }))).toEqual(
      THROTTLED,
    );
    const small = await service.invokeDeviceMethod("dev", { methodName: "ping", payload: "s" });
    expect(small.result).toEqual({ status: 200, payload: { pong: "s" } });
    expect((await methodStatus(hub)).refused).toEqual({ perTarget: 0, perCaller: 0, bytes: 1 });
    dev.release();
    await held;
    const again = await service.invokeDeviceMethod("dev", { methodName: "ping", payload: big });
    expect(again.result).toEqual({ status: 200, payload: { pong: big } });
  }, 30_000);
});
