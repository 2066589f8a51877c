import type { Client as DeviceClient } from "azure-iot-device";
import { Message } from "azure-iot-device";
import type { Client as ServiceClient } from "azure-iothub";
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { childClient, childOf, edgeIdentity, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedRaw } from "../helpers/mqtt-raw.js";
import { sdkClient, sdkRegistry } from "../helpers/service.js";
import { site } from "../helpers/site.js";

/**
 * The status a call from the root's service API (the official SDK) gets: the device's,
 * or the root's own refusal. The response timeout is short so a call nobody answers ends
 * (504) well inside a test.
 */
async function callStatus(service: ServiceClient, deviceId: string): Promise<number> {
  try {
    const r = await service.invokeDeviceMethod(deviceId, {
      methodName: "blink",
      payload: 3,
      responseTimeoutInSeconds: 5,
    });
    return (r.result as { status: number }).status;
  } catch (e) {
    return (e as { response?: { statusCode?: number } }).response?.statusCode ?? 0;
  }
}

/** Calls until the status is `want` (bounded); the last status seen. */
async function statusBecomes(service: ServiceClient, deviceId: string, want: number): Promise<number> {
  let last = 0;
  await eventually(`a call to ${deviceId} answered ${want}`, async () => {
    last = await callStatus(service, deviceId);
    return last === want;
  }).catch(() => undefined);
  return last;
}

describe("method and desired-property subscriptions on a child's link follow the child's own", () => {
  it("a child connected to the edge but not listening gets 404 from the root; listening, its answer; gone, 404 again", async () => {
    const s = await site({}, false, { devices: ["lamp"] });
    const service = sdkClient(s.root);
    const lamp: DeviceClient = await childClient(s.gateway, "lamp", s.keys.get("lamp") ?? "");
    await lamp.open();
    // Its message opens its link to the root (the link its twin and methods would use).
    await lamp.sendEvent(new Message("hello"));
    await s.edge.waitFor(/"upstream-link-up".*"lamp"/);

    // Not listening: the root itself answers 404 (DeviceNotOnline), it does not wait for an answer.
    expect(await callStatus(service, "lamp")).toBe(404);

    lamp.onDeviceMethod("blink", (req, res) => res.send(200, { times: req.payload }, () => undefined));
    // The edge's link subscribes a moment after the lamp does.
    expect(await statusBecomes(service, "lamp", 200)).toBe(200);
    const answer = await service.invokeDeviceMethod("lamp", { methodName: "blink", payload: 7 });
    expect(answer.result).toEqual({ status: 200, payload: { times: 7 } });

    // It disconnects: its link stays (its lane) but stops listening, and the root says 404 again.
    await lamp.close();
    expect(await statusBecomes(service, "lamp", 404)).toBe(404);
  }, 60_000);

  it("a child that stops listening (UNSUBSCRIBE, still connected): its link stops too, for desired properties and for methods", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "lamp");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const service = sdkClient(root);
    const registry = sdkRegistry(root);
    const lamp = await listeningLamp(edge.ports.mqtts, edge.caCertificate, key);
    await eventually(
      "the lamp's link listens for methods",
      async () => (await callStatus(service, "lamp")) === 200,
    );

    await registry.updateTwin("lamp", { properties: { desired: { color: "blue" } } }, "*");
    await eventually("blue reaches the lamp live through the edge", () => lamp.colors.includes("blue"));

    await lamp.unsubscribe(DESIRED);
    // A call answered after the lamp's UNSUBSCRIBE: the edge's link sent its own before the answer.
    expect(await callStatus(service, "lamp")).toBe(200);
    await registry.updateTwin("lamp", { properties: { desired: { color: "green" } } }, "*");
    // A call on the same connection after the change: had the link got a patch, the edge has it by now.
    expect(await callStatus(service, "lamp")).toBe(200);
    expect((await edge.twins.get("lamp")).desired.properties.color).toBe("blue");

    await lamp.unsubscribe(METHODS);
    expect(await statusBecomes(service, "lamp", 404)).toBe(404);
  }, 60_000);
});

const DESIRED = "$iothub/twin/PATCH/properties/desired/#";
const METHODS = "$iothub/methods/POST/#";

/**
 * A raw MQTT child of the edge that listens for methods (answers every call with 200) and
 * for its desired properties (keeps the colors it is sent), and can unsubscribe either.
 */
async function listeningLamp(port: number, ca: string, key: string) {
  const c = await connectedRaw(port, ca, "lamp", key);
  const acks = new Map<number, () => void>();
  const lamp = {
    colors: [] as unknown[],
    unsubscribe: (topic: string) =>
      new Promise<void>((resolve) => {
        acks.set(3, resolve);
        c.send({ cmd: "unsubscribe", messageId: 3, unsubscriptions: [topic] } as Packet);
      }),
  };
  void (async () => {
    for (;;) {
      const p = await c.next(60_000).catch(() => "closed" as const);
      if (p === "closed") return;
      if (p.cmd === "suback" || p.cmd === "unsuback") {
        acks.get(p.messageId ?? 0)?.();
        acks.delete(p.messageId ?? 0);
      } else if (p.cmd === "publish" && p.topic.startsWith("$iothub/twin/PATCH/properties/desired/"))
        lamp.colors.push((JSON.parse(p.payload.toString()) as { color?: unknown }).color);
      else if (p.cmd === "publish" && p.topic.startsWith("$iothub/methods/POST/")) {
        const rid = new URLSearchParams(p.topic.split("?")[1]).get("$rid") ?? "";
        c.send({
          cmd: "publish",
          topic: `$iothub/methods/res/200/?$rid=${rid}`,
          payload: Buffer.from("{}"),
          qos: 0,
        } as Packet);
      }
    }
  })();
  await new Promise<void>((resolve) => {
    acks.set(2, resolve);
    c.send({
      cmd: "subscribe",
      messageId: 2,
      subscriptions: [METHODS, DESIRED].map((topic) => ({ topic, qos: 0 })),
    } as Packet);
  });
  return lamp;
}
