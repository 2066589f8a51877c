/**
 * How the hub answers a link's attach: IoT Hub's link properties repeated as Microsoft's
 * edge hub repeats them (ts/amqp/link-properties.ts), with a rhea client and through the
 * official SDK; and the refusals (an address not served, another identity's address), after
 * which the connection still serves the client's own links.
 */
import { join } from "node:path";
import { Message } from "azure-iot-device";
import type { EventContext, Receiver, Sender } from "rhea";
import { describe, expect, it } from "vitest";
import { type EdgeHub, EVENTS_QUEUE } from "../../ts/index.js";
import { RawAmqp, tokenFor } from "../helpers/amqp.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedDevice, recordingLogger, startHub } from "../helpers/hub.js";

/** A hub serving AMQP with devices `d1`, `d2`, and a rhea connection holding d1's token. */
async function hubWithD1(): Promise<{ hub: EdgeHub; raw: RawAmqp }> {
  const hub = await startHub(join(await tempDir(), "hub"));
  for (const deviceId of ["d1", "d2"]) await hub.registry.createDevice({ deviceId });
  const raw = await RawAmqp.open(hub);
  expect(await raw.putToken("localhost/devices/d1", tokenFor(hub, "d1"))).toBe(200);
  return { hub, raw };
}

/** The attach the hub answered on `link` (rhea's typings leave `remote` out). */
function answered(link: Sender | Receiver): { properties?: Record<string, unknown> } | undefined {
  return (link as unknown as { remote: { attach?: { properties?: Record<string, unknown> } } }).remote.attach;
}

/** Resolves once the hub has answered the attach of `link`. */
function opened(link: Sender | Receiver): Promise<void> {
  return new Promise((resolve) =>
    link.once(link.is_sender() ? "sender_open" : "receiver_open", () => resolve()),
  );
}

/** Resolves with the condition the hub detached `link` with. */
function detached(link: Sender | Receiver): Promise<string | undefined> {
  return new Promise((resolve) =>
    link.once(link.is_sender() ? "sender_close" : "receiver_close", () => {
      const remote = (link as unknown as { remote?: { detach?: { error?: { condition?: string } } } }).remote;
      resolve(remote?.detach?.error?.condition);
    }),
  );
}

const IOT_HUB_PROPERTIES = {
  "com.microsoft:api-version": "2020-09-30",
  "com.microsoft:client-version": "azure-iot-device/1.18.4 (node v20.0.0; linux; x64)",
};

describe("link properties (com.microsoft:api-version, channel-correlation-id, client-version)", () => {
  it("answers a telemetry link's attach with exactly the IoT Hub properties the client sent, nothing else", async () => {
    const { hub, raw } = await hubWithD1();
    const sender = raw.connection.open_sender({
      target: { address: "/devices/d1/messages/events" },
      properties: {
        ...IOT_HUB_PROPERTIES,
        "x-opt-other": "not repeated",
        "com.microsoft:model-id": "dtmi:x;1",
      },
    } as Parameters<typeof raw.connection.open_sender>[0]);
    await opened(sender);
    expect(answered(sender)?.properties).toEqual(IOT_HUB_PROPERTIES);
    expect(await raw.send(sender, { body: "after the attach" })).toBe("accepted");
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["after the attach"]);
  });

  it("repeats a twin and a methods link's channel-correlation-id, per link", async () => {
    const { raw } = await hubWithD1();
    const channel = (address: string, id: string, receiver: boolean) => {
      const options = {
        properties: { "com.microsoft:channel-correlation-id": id, "com.microsoft:api-version": "2020-09-30" },
      };
      return receiver
        ? raw.connection.open_receiver({ source: { address }, autoaccept: false, ...options })
        : raw.connection.open_sender({ target: { address }, ...options });
    };
    const links = [
      channel("/devices/d1/twin", "twin:0001", true),
      channel("/devices/d1/twin", "twin:0001", false),
      channel("/devices/d1/methods/devicebound", "methods:0002", true),
      channel("/devices/d1/methods/devicebound", "methods:0002", false),
    ];
    await Promise.all(links.map(opened));
    expect(links.map((l) => answered(l)?.properties?.["com.microsoft:channel-correlation-id"])).toEqual([
      "twin:0001",
      "twin:0001",
      "methods:0002",
      "methods:0002",
    ]);
    expect(links.every((l) => answered(l)?.properties?.["com.microsoft:api-version"] === "2020-09-30")).toBe(
      true,
    );
  });

  it("sends no properties when the client sent none, and none that are not text", async () => {
    const { raw } = await hubWithD1();
    const plain = raw.connection.open_sender({ target: { address: "/devices/d1/messages/events" } });
    const numeric = raw.connection.open_sender({
      target: { address: "/devices/d1/messages/events" },
      properties: { "com.microsoft:api-version": 7 },
    } as Parameters<typeof raw.connection.open_sender>[0]);
    await Promise.all([opened(plain), opened(numeric)]);
    expect(answered(plain)?.properties).toBeUndefined();
    expect(answered(numeric)?.properties).toBeUndefined();
  });

  it("is answered to the official SDK's links, whose client version and channels the hub logs", async () => {
    const log = recordingLogger();
    const hub = await startHub(join(await tempDir(), "hub"), {}, log);
    const device = await connectedDevice(hub, "sdk1", "amqp");
    device.onDeviceMethod("ping", (_req, res) => res.send(200, null, () => undefined));
    await device.sendEvent(new Message("hello"));
    await device.getTwin();
    const links = () =>
      log.events.filter((e) => e.event === "amqp-link-opened").map((e) => e.fields) as Array<
        Record<string, string>
      >;
    // Both method links: calls go on the one the SDK receives on (our methods-out).
    await eventually("the SDK's method links", () =>
      ["methods-in", "methods-out"].every((kind) => links().some((l) => l.kind === kind)),
    );
    const telemetry = links().find((l) => l.kind === "telemetry");
    // azure-iot-amqp-base puts its user agent (`azure-iot-device/{version} (node …)`) on every link.
    expect(telemetry?.clientVersion).toMatch(/^azure-iot-device\/\d+\.\d+\.\d+/);
    expect(links().find((l) => l.kind === "twin-in")?.channel).toMatch(/^twin:/);
    expect(links().find((l) => l.kind === "methods-in")?.channel).toMatch(/^methods:/);
    // The SDK still works on the answered links: a method call reaches it.
    expect(await hub.methods.invoke("sdk1", { methodName: "ping", payload: null })).toMatchObject({
      status: 200,
    });
  });
});

describe("refused links", () => {
  it("detaches a link to an address not served with amqp:not-found, and the connection serves the device's own links after it", async () => {
    const { hub, raw } = await hubWithD1();
    for (const address of ["/devices/d1/nowhere", "/nothing/here", "/devices/d1/messages/events/x"]) {
      const stray = raw.connection.open_sender({ target: { address } });
      expect(await detached(stray)).toBe("amqp:not-found");
    }
    const unknown = raw.connection.open_receiver({
      source: { address: "/devices/d1/files" },
      autoaccept: false,
    });
    expect(await detached(unknown)).toBe("amqp:not-found");
    const own = await raw.sender("/devices/d1/messages/events");
    expect(await raw.send(own.sender, { body: "still served" })).toBe("accepted");
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["still served"]);
  });

  it("detaches links to another device's telemetry, C2D, twin and methods with amqp:unauthorized-access, and keeps the connection", async () => {
    const { hub, raw } = await hubWithD1();
    const foreign = [
      raw.connection.open_sender({ target: { address: "/devices/d2/messages/events" } }),
      raw.connection.open_receiver({
        source: { address: "/devices/d2/messages/devicebound" },
        autoaccept: false,
      }),
      raw.connection.open_receiver({ source: { address: "/devices/d2/twin" }, autoaccept: false }),
      raw.connection.open_sender({ target: { address: "/devices/d2/twin" } }),
      raw.connection.open_receiver({
        source: { address: "/devices/d2/methods/devicebound" },
        autoaccept: false,
      }),
      raw.connection.open_sender({ target: { address: "/devices/d2/modules/m1/messages/events" } }),
    ];
    expect(await Promise.all(foreign.map(detached))).toEqual(foreign.map(() => "amqp:unauthorized-access"));
    expect(raw.connection.is_open()).toBe(true);
    // d1's own C2D link still gets d1's messages.
    await hub.delivery.sendC2D("d1", { body: Buffer.from("for d1") });
    const { receiver } = raw.receiver("/devices/d1/messages/devicebound");
    const got = new Promise<string>((resolve) =>
      receiver.once("message", (e: EventContext) => {
        e.delivery?.accept();
        resolve(String(Buffer.from(e.message?.body?.content ?? e.message?.body ?? "")));
      }),
    );
    receiver.add_credit(1);
    expect(await got).toBe("for d1");
  });
});
