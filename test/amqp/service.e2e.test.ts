import { join } from "node:path";
import type { Message } from "azure-iot-device";
import rhea from "rhea";
import { describe, expect, it } from "vitest";
import { FeedbackQueue } from "../../ts/amqp/links/feedback.js";
import { createSasToken } from "../../ts/auth/sas.js";
import { MAX_DELIVERY_COUNT } from "../../ts/delivery/device-delivery.js";
import { type EdgeHub, silentLogger } from "../../ts/index.js";
import { C2D_MAX_QUEUED } from "../../ts/service/service-side.js";
import { RawAmqp, tokenFor } from "../helpers/amqp.js";
import { edgeIdentity, startEdge, startRoot } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, deviceClient, startHub, stopHub } from "../helpers/hub.js";
import { call, serviceToken } from "../helpers/service.js";
import { c2d, feedbackRecords, serviceClient } from "../helpers/service-amqp.js";

/** A rhea connection holding the hub's service token. */
async function rawService(hub: EdgeHub): Promise<RawAmqp> {
  const raw = await RawAmqp.open(hub);
  expect(await raw.putToken("localhost", serviceToken(hub))).toBe(200);
  return raw;
}

/** A hub, the official device client of `deviceId` over AMQP (opened), and a service client reading feedback. */
async function withDevice(deviceId: string) {
  const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
  const device = await deviceClient(hub, deviceId, undefined, "amqp");
  const service = serviceClient(hub);
  const records = await feedbackRecords(service);
  await device.open();
  return { hub, device, service, records };
}

describe("C2D from the official service client over AMQP", () => {
  it("stores each send for the device (ids, properties, ack), and feedback of complete and reject reaches the feedback receiver", async () => {
    const { hub, device, service, records } = await withDevice("lamp");
    const got: Array<{ body: string; messageId: unknown; correlationId: unknown; k: unknown; ack: unknown }> =
      [];
    device.on("message", (m: Message) => {
      const body = m.getData().toString();
      got.push({
        body,
        messageId: m.messageId,
        correlationId: m.correlationId,
        k: m.properties.getValue("k"),
        ack: m.ack,
      });
      if (body === "reject-me") void device.reject(m);
      else void device.complete(m);
    });
    await service.send("lamp", c2d("complete-me", "m1", "full"));
    await eventually("feedback of m1", () => records.length === 1);
    await service.send("lamp", c2d("reject-me", "m2", "full"));
    await eventually("feedback of m2", () => records.length === 2);
    // positive asks only for completions, negative only for rejections: neither gives one here.
    await service.send("lamp", c2d("reject-me", "m3", "positive"));
    await service.send("lamp", c2d("complete-me", "m4", "negative"));
    await service.send("lamp", c2d("complete-me", "m5", "positive"));
    await eventually("feedback of m5", () => records.length === 3);
    expect(got.map((g) => g.body)).toEqual([
      "complete-me",
      "reject-me",
      "reject-me",
      "complete-me",
      "complete-me",
    ]);
    expect(got[0]).toEqual({
      body: "complete-me",
      messageId: "m1",
      correlationId: "c-m1",
      k: "v",
      ack: "full",
    });
    const generationId = hub.registry.getDevice("lamp")?.generationId;
    expect(records.map((r) => [r.originalMessageId, r.statusCode, r.description])).toEqual([
      ["m1", "Success", "Success"],
      ["m2", "Rejected", "Rejected"],
      ["m5", "Success", "Success"],
    ]);
    for (const r of records) {
      expect(r.deviceId).toBe("lamp");
      expect(r.deviceGenerationId).toBe(generationId);
      expect(Number.isNaN(Date.parse(String(r.enqueuedTimeUtc)))).toBe(false);
    }
  });

  it("keeps feedback durably until a service client takes it, across a restart; an abandoned batch comes again", async () => {
    const dir = join(await tempDir(), "hub");
    const hub = await startHub(dir, BOTH_HEADS);
    const device = await deviceClient(hub, "valve", undefined, "amqp");
    await device.open();
    device.on("message", (m: Message) => void device.complete(m));
    await serviceClient(hub).send("valve", c2d("x", "kept", "positive"));
    await eventually("feedback stored", async () =>
      (await hub.store.stats()).queues.some((q) => q.name === "$feedback" && q.count === 1),
    );
    await device.close();
    await stopHub(hub);
    const again = await startHub(dir, BOTH_HEADS);
    const records = await feedbackRecords(serviceClient(again), 1);
    await eventually("feedback delivered after the restart", () => records.length === 1);
    expect(records[0]?.originalMessageId).toBe("kept");
    await eventually("feedback removed once completed", async () =>
      (await again.store.stats()).queues.some((q) => q.name === "$feedback" && q.count === 0),
    );
  });

  it("sends a batch again to the next service client when the connection it was out on goes away unsettled", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const raw = await rawService(hub);
    const { receiver } = raw.receiver("/messages/serviceBound/feedback");
    receiver.add_credit(1);
    const taken = new Promise<void>((resolve) => receiver.once("message", () => resolve()));
    const device = await deviceClient(hub, "fan", undefined, "amqp");
    await device.open();
    device.on("message", (m: Message) => void device.complete(m));
    const service = serviceClient(hub);
    await service.send("fan", c2d("x", "once", "positive"));
    await taken;
    // The connection ends with the batch unsettled.
    raw.connection.close();
    await raw.closed;
    const records = await feedbackRecords(service);
    await eventually("the batch again, to the SDK", () => records.length === 1);
    expect(records[0]?.originalMessageId).toBe("once");
  });

  it("takes iothub-ack on the HTTPS service API's C2D send too: the same store, the same feedback", async () => {
    const { hub, device, records } = await withDevice("bulb");
    device.on("message", (m: Message) => void device.complete(m));
    const send = (ack: string) =>
      call(hub, "POST", "/devices/bulb/messages/deviceBound", Buffer.from("x"), {
        "iothub-ack": ack,
        "iothub-messageid": `https-${ack}`,
      });
    expect((await send("sometimes")).status).toBe(400);
    expect((await send("full")).status).toBe(204);
    await eventually("feedback of the HTTPS send", () => records.length === 1);
    expect(records[0]).toMatchObject({ originalMessageId: "https-full", statusCode: "Success" });
  });

  it("removes a C2D message abandoned at its tenth delivery, with DeliveryCountExceeded feedback", async () => {
    const { hub, device, service, records } = await withDevice("door");
    let deliveries = 0;
    device.on("message", (m: Message) => {
      deliveries++;
      void device.abandon(m);
    });
    await service.send("door", c2d("never", "poison", "negative"));
    await eventually("dead-letter feedback", () => records.length === 1);
    expect(records[0]).toMatchObject({
      originalMessageId: "poison",
      deviceId: "door",
      statusCode: "DeliveryCountExceeded",
      description: "DeliveryCountExceeded",
    });
    expect(deliveries).toBe(MAX_DELIVERY_COUNT);
    await eventually("removed from the device's queue", async () =>
      (await hub.store.stats()).queues.some((q) => q.name === "$c2d/door" && q.count === 0),
    );
  });

  it("keeps at most maxRecords feedback records waiting, dropping the rest", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "d1" });
    const feedback = new FeedbackQueue(hub.store, hub.registry, silentLogger, 2);
    const settled = (mid: string) => ({
      offset: 0,
      body: Buffer.alloc(0),
      properties: { "$.mid": mid, "iothub-ack": "full" },
      enqueuedAt: Date.now(),
      expiresAt: null,
    });
    for (const mid of ["a", "b", "c"]) feedback.settled("d1", settled(mid), "completed");
    // Modules' inputs and messages that asked for nothing give none.
    feedback.settled("d1/m1", settled("module"), "completed");
    feedback.settled("d1", { ...settled("quiet"), properties: { "$.mid": "quiet" } }, "rejected");
    expect(feedback.dropped).toBe(1);
    await eventually("two stored", async () =>
      (await hub.store.stats()).queues.some((q) => q.name === "$feedback" && q.count === 2),
    );
    const stored = await hub.store.read("$feedback");
    expect(
      stored.map((m) => (JSON.parse(m.body.toString()) as { originalMessageId: string }).originalMessageId),
    ).toEqual(["a", "b"]);
  });

  it("refuses a send to an unknown device with the SDK's DeviceNotFoundError, and a bad service key at the put-token", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const err = await serviceClient(hub)
      .send("nobody", c2d("x", "m1"))
      .then(
        () => undefined,
        (e: Error) => e,
      );
    expect(err?.name).toBe("DeviceNotFoundError");
    const wrongKey = hub.serviceConnectionString.replace(
      /SharedAccessKey=[^;]+/,
      `SharedAccessKey=${"A".repeat(44)}`,
    );
    const refused = await serviceClient(hub, wrongKey)
      .open()
      .then(
        () => undefined,
        (e: Error) => e,
      );
    // The SDK wraps the put-token's refusal: "Could not connect", the cause as `amqpError`.
    expect((refused as Error & { amqpError?: Error })?.amqpError?.name).toBe("UnauthorizedError");
  });

  it("refuses a send past IoT Hub's 50 queued messages of a device with the SDK's DeviceMaximumQueueDepthExceededError, exactly when sent at once; a completed one makes room", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "lamp" });
    const service = serviceClient(hub);
    const send = (body: string) =>
      service.send("lamp", c2d(body, body)).then(
        () => "stored",
        (e: Error) => e.name,
      );
    const queued = async () =>
      (await hub.store.stats()).queues.find((q) => q.name === "$c2d/lamp")?.count ?? 0;
    // 60 sends at once, nobody listening: exactly 50 are stored, and every refusal is IoT Hub's.
    const outcomes = await Promise.all(Array.from({ length: 60 }, (_, i) => send(`m${i}`)));
    expect(outcomes.filter((o) => o === "stored")).toHaveLength(C2D_MAX_QUEUED);
    expect(new Set(outcomes.filter((o) => o !== "stored"))).toEqual(
      new Set(["DeviceMaximumQueueDepthExceededError"]),
    );
    expect(await send("over")).toBe("DeviceMaximumQueueDepthExceededError");
    expect(await queued()).toBe(C2D_MAX_QUEUED);
    // The HTTPS send is refused the same way, as IoT Hub answers it.
    const http = await call(hub, "POST", "/devices/lamp/messages/deviceBound", Buffer.from("over"));
    expect(http.status).toBe(403);
    expect(JSON.stringify(http.body)).toContain("DeviceMaximumQueueDepthExceeded");

    // The device takes one and completes it: one more fits, and only one.
    const device = await deviceClient(hub, "lamp", undefined, "amqp");
    const got: string[] = [];
    device.on("message", (m: Message) => {
      got.push(m.getData().toString());
      if (got.length === 1) void device.complete(m);
    });
    await device.open();
    await eventually("one completed", async () => (await queued()) === C2D_MAX_QUEUED - 1);
    await service.send("lamp", c2d("after", "after"));
    const again = await service.send("lamp", c2d("over", "over")).then(
      () => undefined,
      (e: Error) => e.name,
    );
    expect(again).toBe("DeviceMaximumQueueDepthExceededError");
    await device.close();
  });
});

describe("the AMQP service addresses refuse what IoT Hub refuses", () => {
  it("refuses /messages/devicebound and the feedback address to a connection holding only a device token", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "d1" });
    const raw = await RawAmqp.open(hub);
    expect(await raw.putToken("localhost/devices/d1", tokenFor(hub, "d1"))).toBe(200);
    const { ended } = await raw.sender("/messages/devicebound");
    expect((await ended).condition).toBe("amqp:unauthorized-access");
    const feedback = raw.receiver("/messages/serviceBound/feedback");
    expect((await feedback.ended).condition).toBe("amqp:unauthorized-access");
    // A device token put for the hub's own name is no service token either.
    expect(await raw.putToken("localhost", tokenFor(hub, "d1"))).toBe(401);
  });

  it("stores a send's message id, application properties and ack as they came; a policy token with a bad signature is refused", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "lamp" });
    const raw = await RawAmqp.open(hub);
    expect(await raw.putToken("localhost", `${serviceToken(hub)}x`)).toBe(401);
    expect(await raw.putToken("localhost", serviceToken(hub))).toBe(200);
    const { sender } = await raw.sender("/messages/devicebound");
    const to = "/devices/lamp/messages/devicebound";
    const sent = {
      to,
      message_id: "svc-1",
      application_properties: { k: "v", "iothub-ack": "full" },
      body: rhea.message.data_section(Buffer.from("on")),
    };
    expect(await raw.send(sender, sent)).toBe("accepted");
    const [queued] = await hub.store.read("$c2d/lamp");
    expect(queued?.body.toString()).toBe("on");
    // The ack stays with the message: the device sees it, and its feedback reads it.
    expect({ ...queued?.properties }).toEqual({ k: "v", "iothub-ack": "full", "$.mid": "svc-1", "$.to": to });
  });

  it("rejects a message without a device in `to`, an oversized one, an unknown ack, and keeps the link", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "d1" });
    const raw = await rawService(hub);
    const { sender } = await raw.sender("/messages/devicebound");
    const outcome = (m: rhea.Message) =>
      new Promise<string | undefined>((resolve) => {
        const delivery = sender.send(m);
        const done = (e: rhea.EventContext) => {
          if (e.delivery !== delivery) return;
          const state = (e.delivery as unknown as { remote_state?: { error?: { condition?: string } } })
            .remote_state;
          resolve(state?.error?.condition ?? "accepted");
        };
        sender.on("accepted", done);
        sender.on("rejected", done);
      });
    expect(await outcome({ body: "no to" })).toBe("com.microsoft:argument-error");
    expect(await outcome({ body: "module", to: "/devices/d1/modules/m/messages/devicebound" })).toBe(
      "com.microsoft:argument-error",
    );
    expect(
      await outcome({
        body: rhea.message.data_section(Buffer.alloc(65 * 1024)),
        to: "/devices/d1/messages/devicebound",
      }),
    ).toBe("amqp:link:message-size-exceeded");
    expect(
      await outcome({
        body: "x",
        to: "/devices/d1/messages/devicebound",
        application_properties: { "iothub-ack": "sometimes" },
      }),
    ).toBe("com.microsoft:argument-error");
    expect(
      await outcome({
        body: "x",
        to: "/devices/d1/messages/devicebound",
        application_properties: { bad: { a: 1 } },
      }),
    ).toBe("amqp:decode-error");
    expect(await outcome({ body: "ok", to: "/devices/d1/messages/devicebound" })).toBe("accepted");
    const queue = (await hub.store.stats()).queues.find((q) => q.name === "$c2d/d1");
    expect(queue?.count).toBe(1);
  });

  it("detaches the service links when the policy token expires", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const raw = await RawAmqp.open(hub);
    const key = /SharedAccessKey=([^;]+)/.exec(hub.serviceConnectionString)?.[1] ?? "";
    const shortLived = createSasToken("localhost", key, Math.floor(Date.now() / 1000) + 2, "iothubowner");
    expect(await raw.putToken("localhost", shortLived)).toBe(200);
    const { ended } = await raw.sender("/messages/devicebound");
    expect(await ended).toEqual({ condition: "amqp:unauthorized-access", description: "token-expired" });
  });

  it("serves C2D sends on an edge hub but not feedback, which its parent's service side gives", async () => {
    const root = await startRoot(join(await tempDir(), "root"));
    const edge = await startEdge(join(await tempDir(), "edge"), await edgeIdentity(root, "gw"), {
      listen: BOTH_HEADS.listen,
    });
    const raw = await RawAmqp.open(edge);
    expect(await raw.putToken(edge.config.hostname, serviceToken(edge))).toBe(200);
    const feedback = raw.receiver("/messages/serviceBound/feedback");
    expect(await feedback.ended).toMatchObject({ condition: "amqp:not-found" });
    const { sender } = await raw.sender("/messages/devicebound");
    expect(await raw.send(sender, { to: "/devices/nobody/messages/devicebound", body: "x" })).toBe(
      "rejected",
    );
  });

  it("detaches foreign service addresses and the feedback address in the wrong direction", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const raw = await rawService(hub);
    const foreign = await raw.sender("/messages/devicebound/extra");
    expect((await foreign.ended).condition).toBe("amqp:not-found");
    const badFeedback = raw.receiver("/messages/serviceBound/feedbacks");
    expect((await badFeedback.ended).condition).toBe("amqp:not-found");
    const sendingFeedback = await raw.sender("/messages/serviceBound/feedback");
    expect((await sendingFeedback.ended).condition).toBe("amqp:not-allowed");
    const receivingC2d = raw.receiver("/messages/devicebound");
    expect((await receivingC2d.ended).condition).toBe("amqp:not-allowed");
  });
});
