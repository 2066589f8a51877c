/**
 * The Event Hubs–compatible endpoint against the official consumer (@azure/event-hubs 6.0.4,
 * in a child process trusting the hub's CA): devices send with azure-iot-device over MQTT and
 * AMQP, the consumer reads what they sent from a position, follows live events, and asks the
 * `$management` node; bad input gets the error the client surfaces, and nothing is lost.
 */
import { join } from "node:path";
import { type Client, Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { type EdgeHub, EVENTS_QUEUE } from "../../ts/index.js";
import { Consumer, eventHubToken } from "../helpers/event-hubs.js";
import { tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, startHub, stopHub } from "../helpers/hub.js";

/** A root hub serving AMQP, its event hub `telemetry` with the extra consumer group `dashboards`. */
async function root(dataDir?: string): Promise<EdgeHub> {
  return startHub(dataDir ?? join(await tempDir(), "hub"), {
    ...BOTH_HEADS,
    eventHub: { name: "telemetry", consumerGroups: ["dashboards"] },
  });
}

/** Sends `n` JSON messages `{device, n: i}` from `device`, each with ids, a property and a content type. */
async function send(device: Client, deviceId: string, from: number, n: number): Promise<void> {
  for (let i = from; i < from + n; i++) {
    const m = new Message(JSON.stringify({ device: deviceId, n: i }));
    m.messageId = `${deviceId}-${i}`;
    m.correlationId = `c-${i}`;
    m.contentType = "application/json";
    m.contentEncoding = "utf-8";
    m.properties.add("level", i % 2 === 0 ? "even" : "odd");
    await device.sendEvent(m);
  }
}

/** A hub, a consumer, and `mqtt` then `amqp` having sent 3 messages each (offsets 0-5). */
async function withEvents(): Promise<{ hub: EdgeHub; consumer: Consumer }> {
  const hub = await root();
  const mqtt = await connectedDevice(hub, "mqtt-dev", "mqtt");
  const amqp = await connectedDevice(hub, "amqp-dev", "amqp");
  await send(mqtt, "mqtt-dev", 0, 3);
  await send(amqp, "amqp-dev", 3, 3);
  return { hub, consumer: new Consumer(hub) };
}

const bodies = (events: Array<{ body: unknown }>) => events.map((e) => (e.body as { n: number }).n);

describe("the Event Hubs-compatible endpoint with @azure/event-hubs", () => {
  it("prints a connection string with the hub's name, policy, key and event hub name", async () => {
    const hub = await root();
    const key = /SharedAccessKey=([^;]+)/.exec(hub.serviceConnectionString)?.[1];
    expect(hub.eventHubConnectionString).toBe(
      `Endpoint=sb://localhost/;SharedAccessKeyName=iothubowner;SharedAccessKey=${key};EntityPath=telemetry`,
    );
  });

  it("reads from the earliest event what devices sent over MQTT and AMQP, with IoT Hub's annotations", async () => {
    const { hub, consumer } = await withEvents();
    const events = await consumer.read({ position: "earliest" }, 6);
    const stored = await hub.store.read(EVENTS_QUEUE);
    expect(bodies(events)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(events.map((e) => e.sequenceNumber)).toEqual(stored.map((m) => m.offset));
    expect(events.map((e) => e.offset)).toEqual(stored.map((m) => String(m.offset)));
    expect(events.map((e) => e.enqueuedTimeUtc)).toEqual(stored.map((m) => m.enqueuedAt));
    for (const [i, e] of events.entries()) {
      const deviceId = i < 3 ? "mqtt-dev" : "amqp-dev";
      expect(e.body).toEqual({ device: deviceId, n: i });
      expect(e.properties).toEqual({ level: i % 2 === 0 ? "even" : "odd" });
      expect(e.messageId).toBe(`${deviceId}-${i}`);
      expect(e.correlationId).toBe(`c-${i}`);
      expect(e.contentType).toBe("application/json");
      expect(e.systemProperties).toMatchObject({
        "iothub-connection-device-id": deviceId,
        "iothub-message-source": "Telemetry",
        "iothub-enqueuedtime": e.enqueuedTimeUtc,
        contentEncoding: "utf-8",
      });
    }
  });

  it("reads from a sequence number (exclusive and inclusive), an offset, and an enqueued time", async () => {
    const { hub, consumer } = await withEvents();
    expect(bodies(await consumer.read({ position: { sequenceNumber: 2 } }, 3))).toEqual([3, 4, 5]);
    expect(bodies(await consumer.read({ position: { sequenceNumber: 2, isInclusive: true } }, 4))).toEqual([
      2, 3, 4, 5,
    ]);
    expect(bodies(await consumer.read({ position: { offset: "4" } }, 1))).toEqual([5]);
    // Just before the third event: it and what followed (an event of the same millisecond
    // before it too; the filter is "enqueued after").
    const stored = await hub.store.read(EVENTS_QUEUE);
    const at = (stored[2]?.enqueuedAt ?? 0) - 1;
    const later = stored.filter((m) => m.enqueuedAt > at).map((m) => JSON.parse(m.body.toString()).n);
    expect(later).toContain(2);
    expect(bodies(await consumer.read({ position: { enqueuedOn: at } }, later.length))).toEqual(later);
  });

  it("tells a receiver that asks the partition's last event with each event (trackLastEnqueuedEventProperties)", async () => {
    const { hub, consumer } = await withEvents();
    const { events, last } = await consumer.readTracked(
      { position: { sequenceNumber: 0, isInclusive: true } },
      2,
    );
    expect(bodies(events).slice(0, 2)).toEqual([0, 1]);
    const stored = await hub.store.read(EVENTS_QUEUE);
    expect(last).toMatchObject({ sequenceNumber: 5, offset: "5", enqueuedOn: stored[5]?.enqueuedAt });
  });

  it("from the latest event reads only what is stored after it attached, live", async () => {
    const { hub, consumer } = await withEvents();
    const follow = consumer.follow({ position: "latest" });
    await follow.ready;
    const device = await connectedDevice(hub, "late", "mqtt");
    await send(device, "late", 100, 2);
    expect(bodies(await follow.until(2))).toEqual([100, 101]);
    expect(follow.events.map((e) => e.sequenceNumber)).toEqual([6, 7]);
    await follow.stop();
  });

  it("serves the same over WebSocket at the client's $servicebus/websocket on the HTTPS listener", async () => {
    const { hub } = await withEvents();
    const overWs = new Consumer(hub, undefined, "ws");
    expect((await overWs.properties()).hub.name).toBe("telemetry");
    expect(bodies(await overWs.read({ position: { sequenceNumber: 1 } }, 4))).toEqual([2, 3, 4, 5]);
  });

  it("gives the event hub's and its partition's properties from $management", async () => {
    const hub = await root();
    const consumer = new Consumer(hub);
    const empty = await consumer.properties();
    expect(empty.hub).toMatchObject({ name: "telemetry", partitionIds: ["0"] });
    expect(empty.ids).toEqual(["0"]);
    expect(empty.partition).toMatchObject({
      eventHubName: "telemetry",
      partitionId: "0",
      isEmpty: true,
      lastEnqueuedSequenceNumber: -1,
      lastEnqueuedOffset: "-1",
    });
    const device = await connectedDevice(hub, "d1", "amqp");
    await send(device, "d1", 0, 3);
    const [, , last] = await hub.store.read(EVENTS_QUEUE);
    const full = await consumer.properties();
    expect(full.partition).toMatchObject({
      isEmpty: false,
      beginningSequenceNumber: 0,
      lastEnqueuedSequenceNumber: 2,
      lastEnqueuedOffset: "2",
      lastEnqueuedOnUtc: last?.enqueuedAt,
    });
  });

  it("gives two consumer groups (and two readers of one group) the same events, each from its own position", async () => {
    const { hub, consumer } = await withEvents();
    const [a, b, c] = await Promise.all([
      consumer.read({ position: "earliest" }, 6),
      consumer.read({ group: "dashboards", position: "earliest" }, 6),
      consumer.read({ group: "DASHBOARDS", position: { sequenceNumber: 3 } }, 2),
    ]);
    expect(bodies(a)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(bodies(b)).toEqual(bodies(a));
    // Subscribed to the whole event hub (the client lists the partitions and balances them).
    expect(bodies(await consumer.read({ partition: "*", position: "earliest" }, 6))).toEqual(bodies(a));
    expect(bodies(c)).toEqual([4, 5]);
    // Reading acknowledged nothing: the first group reads it all again.
    expect(bodies(await consumer.read({ position: "earliest" }, 6))).toEqual([0, 1, 2, 3, 4, 5]);
    // IoT Hub's own name of the entity reads the same partition.
    const iotHub = new Consumer(
      hub,
      (hub.eventHubConnectionString ?? "").replace("EntityPath=telemetry", "EntityPath=messages/events"),
    );
    expect((await iotHub.properties()).ids).toEqual(["0"]);
    expect(bodies(await iotHub.read({ position: "earliest" }, 6))).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it("after the hub restarts, the same connection string reads on from a consumer's sequence number, nothing lost", async () => {
    const dataDir = join(await tempDir(), "hub");
    let hub = await root(dataDir);
    await send(await connectedDevice(hub, "d1", "amqp"), "d1", 0, 3);
    const before = await new Consumer(hub).read({ position: "earliest" }, 3);
    const checkpoint = before.at(-1)?.sequenceNumber ?? -1;
    const connectionString = hub.eventHubConnectionString;
    await stopHub(hub);
    hub = await root(dataDir);
    expect(hub.eventHubConnectionString).toBe(connectionString);
    await send(await connectedDevice(hub, "d1", "mqtt"), "d1", 3, 2);
    const consumer = new Consumer(hub);
    expect(bodies(await consumer.read({ position: { sequenceNumber: checkpoint } }, 2))).toEqual([3, 4]);
    const all = await consumer.read({ position: "earliest" }, 5);
    expect(all.map((e) => e.sequenceNumber)).toEqual([0, 1, 2, 3, 4]);
  });

  it("lets a reader of a higher owner level take a partition from a lower one, as Event Hubs' epochs", async () => {
    const hub = await root();
    // A client subscribes to a partition once: each reader is a consumer of its own.
    const low = new Consumer(hub).follow({ ownerLevel: 1, position: "latest" });
    await low.ready;
    const high = new Consumer(hub).follow({ ownerLevel: 2, position: "latest" });
    await high.ready;
    await expect(low.until(1)).rejects.toMatchObject({ code: "ReceiverDisconnectedError" });
    for (const ownerLevel of [1, undefined])
      await expect(new Consumer(hub).read({ ownerLevel }, 1)).rejects.toMatchObject({
        code: "ReceiverDisconnectedError",
      });
    // Another consumer group is another set of readers.
    const other = new Consumer(hub).follow({ group: "dashboards", position: "latest" });
    await other.ready;
    await send(await connectedDevice(hub, "d1", "mqtt"), "d1", 0, 1);
    expect(bodies(await high.until(1))).toEqual([0]);
    expect(bodies(await other.until(1))).toEqual([0]);
  });

  it("refuses a partition, a consumer group, a wrong key and an expired token with the client's errors, and loses nothing", async () => {
    const { hub, consumer } = await withEvents();
    await expect(consumer.read({ partition: "1" }, 1)).rejects.toMatchObject({
      code: "ArgumentOutOfRangeError",
    });
    await expect(consumer.read({ group: "nobody" }, 1)).rejects.toMatchObject({
      code: "MessagingEntityNotFoundError",
    });
    await expect(consumer.properties({ partition: "7" })).rejects.toMatchObject({
      code: "ArgumentOutOfRangeError",
    });
    const cs = hub.eventHubConnectionString ?? "";
    const wrongKey = cs.replace(
      /SharedAccessKey=[^;]+/,
      `SharedAccessKey=${Buffer.alloc(32).toString("base64")}`,
    );
    await expect(consumer.read({ connectionString: wrongKey }, 1)).rejects.toMatchObject({
      code: "UnauthorizedError",
    });
    const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1] ?? "";
    const expired = `Endpoint=sb://localhost/;SharedAccessSignature=${eventHubToken("sb://localhost/telemetry", key, -60)};EntityPath=telemetry`;
    await expect(consumer.read({ connectionString: expired }, 1)).rejects.toMatchObject({
      code: "UnauthorizedError",
    });
    expect(bodies(await consumer.read({ position: "earliest" }, 6))).toEqual([0, 1, 2, 3, 4, 5]);
  });
});
