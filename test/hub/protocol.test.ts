import { join } from "node:path";
import { SharedAccessSignature } from "azure-iot-common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EdgeHub, EVENTS_QUEUE, silentLogger } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { deviceConnect, type RawClient, rawClient } from "../helpers/mqtt-raw.js";

let hub: EdgeHub;
let key: string;
const clients: RawClient[] = [];
beforeEach(async () => {
  hub = await EdgeHub.start(
    {
      hostname: "localhost",
      dataDir: join(await tempDir(), "hub"),
      listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
    },
    silentLogger,
  );
  key = (await hub.registry.createDevice({ deviceId: "dev1" })).authentication.symmetricKey?.primaryKey ?? "";
  await hub.registry.createDevice({ deviceId: "dev2" });
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.end();
  await hub.close();
});

async function client(): Promise<RawClient> {
  const c = await rawClient(hub.ports.mqtts, hub.caCertificate);
  clients.push(c);
  return c;
}

function connect(c: RawClient, over: Record<string, unknown> = {}): void {
  c.send(deviceConnect("dev1", key, over));
}

async function connected(): Promise<RawClient> {
  const c = await client();
  connect(c);
  expect(await c.next()).toMatchObject({ cmd: "connack", returnCode: 0 });
  return c;
}

/** Subscribes dev1 to its C2D messages and checks the grant (QoS 1). */
async function subscribeC2D(c: RawClient): Promise<void> {
  c.send({
    cmd: "subscribe",
    messageId: 1,
    subscriptions: [{ topic: "devices/dev1/messages/devicebound/#", qos: 1 }],
  } as never);
  expect(await c.next()).toMatchObject({ cmd: "suback", granted: [1] });
}

const publish = (topic: string, payload: Buffer, qos: 0 | 1 | 2 = 1) =>
  ({ cmd: "publish", topic, payload, qos, retain: false, dup: false, messageId: 7 }) as never;

describe("MQTT head: bad input is refused and the hub keeps serving", () => {
  it("answers CONNECT with the right CONNACK code", async () => {
    const cases: Array<[Record<string, unknown>, number]> = [
      [{ protocolVersion: 5 }, 1],
      // Every refusal is CONNACK 5, as IoT Hub: a known id with a malformed token looks like
      // an unknown one, and a token living longer than ten years is refused.
      [{ password: Buffer.from("not a token") }, 5],
      [
        {
          clientId: "ghost",
          username: "localhost/ghost/?api-version=1",
          password: Buffer.from("not a token"),
        },
        5,
      ],
      [{ password: Buffer.alloc(0) }, 5],
      [
        {
          password: Buffer.from(
            SharedAccessSignature.create(
              "localhost/devices/dev1",
              "",
              key,
              Math.floor(Date.now() / 1000) + 11 * 365 * 86_400,
            ).toString(),
          ),
        },
        5,
      ],
      [
        {
          password: Buffer.from(
            SharedAccessSignature.create(
              "localhost/devices/dev1",
              "",
              Buffer.alloc(32).toString("base64"),
              2e9,
            ).toString(),
          ),
        },
        5,
      ],
      [
        {
          password: Buffer.from(
            SharedAccessSignature.create("localhost/devices/dev1", "", key, 1000).toString(),
          ),
        },
        5,
      ],
      [{ clientId: "ghost", username: "localhost/ghost/?api-version=1" }, 5],
    ];
    for (const [over, code] of cases) {
      const c = await client();
      connect(c, over);
      expect(await c.next(), JSON.stringify(Object.keys(over))).toMatchObject({
        cmd: "connack",
        returnCode: code,
      });
      expect(await c.next()).toBe("closed");
    }
    await connected();
  });

  it("closes on garbage, packets before CONNECT, QoS 2, foreign topics and oversized messages; stores none of them", async () => {
    const garbage = await client();
    garbage.sendBytes(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]));
    expect(await garbage.next()).toBe("closed");

    const early = await client();
    early.send({ cmd: "pingreq" });
    expect(await early.next()).toBe("closed");

    // Invalid UTF-8 in a topic, written byte by byte (mqtt-packet would encode a string).
    const badUtf8 = await connected();
    const topic = Buffer.concat([Buffer.from("devices/dev1/messages/events/"), Buffer.from([0xff, 0xfe])]);
    const body = Buffer.from("x");
    const len = 2 + topic.length + 2 + body.length;
    badUtf8.sendBytes(
      Buffer.concat([
        Buffer.from([0x32, len, topic.length >> 8, topic.length & 0xff]),
        topic,
        Buffer.from([0, 9]),
        body,
      ]),
    );
    expect(await badUtf8.next()).toBe("closed");

    const attempts: Array<[string, Buffer, 0 | 1 | 2]> = [
      ["devices/dev1/messages/events/", Buffer.from("qos2"), 2],
      ["devices/dev2/messages/events/", Buffer.from("not mine"), 1],
      ["devices/dev1/modules/m/messages/events/", Buffer.from("not my module"), 1],
      ["some/other/topic", Buffer.from("outside IoT Hub"), 1],
      ["devices/dev1/messages/events/%E0%A4%A", Buffer.from("bad bag"), 1],
      ["devices/dev1/messages/events/", Buffer.alloc(256 * 1024 + 1), 1],
    ];
    for (const [topic, payload, qos] of attempts) {
      const c = await connected();
      c.send(publish(topic, payload, qos));
      expect(await c.next(), topic).toBe("closed");
    }
    const ok = await connected();
    ok.send(publish("devices/dev1/messages/events/a=1", Buffer.from("fine")));
    expect(await ok.next()).toMatchObject({ cmd: "puback", messageId: 7 });
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["fine"]);
  });

  it("answers PINGREQ, refuses subscriptions it cannot serve yet, and forgets closed clients", async () => {
    const c = await connected();
    c.send({ cmd: "pingreq" });
    expect(await c.next()).toMatchObject({ cmd: "pingresp" });
    c.send({
      cmd: "subscribe",
      messageId: 3,
      subscriptions: [{ topic: "devices/dev2/messages/devicebound/#", qos: 1 }],
    } as never);
    expect(await c.next()).toMatchObject({ cmd: "suback", messageId: 3, granted: [0x80] });
    expect(hub.connectedClients).toEqual(["dev1"]);
    const takeover = await connected();
    expect(await c.next()).toBe("closed");
    takeover.send({ cmd: "disconnect" });
    await takeover.closed;
    expect(hub.connectedClients).toEqual([]);
  });
});

describe("persistent sessions", () => {
  it("restore a clean=false client's subscriptions on reconnect and across a hub restart; clean=true forgets them", async () => {
    const c1 = await connected();
    await subscribeC2D(c1);
    c1.send({ cmd: "disconnect" });
    await c1.closed;
    await hub.delivery.sendC2D("dev1", { body: Buffer.from("while away") });

    const c2 = await client();
    connect(c2);
    expect(await c2.next()).toMatchObject({ cmd: "connack", returnCode: 0, sessionPresent: true });
    const delivered = (await c2.next()) as { cmd: string; topic: string; payload: Buffer; messageId: number };
    expect(delivered).toMatchObject({ cmd: "publish", qos: 1 });
    expect(delivered.topic.startsWith("devices/dev1/messages/devicebound/")).toBe(true);
    expect(delivered.payload.toString()).toBe("while away");
    c2.send({ cmd: "puback", messageId: delivered.messageId } as never);
    c2.send({ cmd: "disconnect" });
    await c2.closed;

    const dataDir = hub.config.dataDir;
    await hub.close();
    hub = await EdgeHub.start(
      { hostname: "localhost", dataDir, listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false } },
      silentLogger,
    );
    await hub.delivery.sendC2D("dev1", { body: Buffer.from("after restart") });
    const c3 = await client();
    connect(c3);
    expect(await c3.next()).toMatchObject({ cmd: "connack", sessionPresent: true });
    expect(((await c3.next()) as { payload: Buffer }).payload.toString()).toBe("after restart");
    c3.end();

    const c4 = await client();
    connect(c4, { clean: true });
    expect(await c4.next()).toMatchObject({ cmd: "connack", sessionPresent: false });
    c4.end();
    const c5 = await client();
    connect(c5);
    expect(await c5.next()).toMatchObject({ cmd: "connack", sessionPresent: false });
  });
});

describe("revocation and identity rules", () => {
  it("closes live connections when the identity is disabled, deleted, or its token expires", async () => {
    const c1 = await connected();
    await hub.registry.updateDevice({ deviceId: "dev1", status: "disabled" });
    expect(await c1.next()).toBe("closed");
    await hub.registry.updateDevice({ deviceId: "dev1", status: "enabled" });
    const c2 = await connected();
    await hub.registry.deleteDevice("dev1");
    expect(await c2.next()).toBe("closed");

    key =
      (await hub.registry.createDevice({ deviceId: "dev1" })).authentication.symmetricKey?.primaryKey ?? "";
    const shortLived = Buffer.from(
      SharedAccessSignature.create(
        "localhost/devices/dev1",
        "",
        key,
        Math.floor(Date.now() / 1000) + 2,
      ).toString(),
    );
    const c3 = await client();
    connect(c3, { password: shortLived });
    expect(await c3.next()).toMatchObject({ cmd: "connack", returnCode: 0 });
    expect(await c3.next(5000)).toBe("closed");
  });

  it("stamps the sender's identity itself, whatever the client puts in its property bag", async () => {
    const c = await connected();
    c.send(publish("devices/dev1/messages/events/%24.cmid=edgeAgent&%24.cdid=dev2&k=v", Buffer.from("x")));
    expect(await c.next()).toMatchObject({ cmd: "puback" });
    const [m] = await hub.store.read(EVENTS_QUEUE);
    expect(m?.properties).toEqual({ k: "v", "$.cdid": "dev1" });
  });

  it("stops deliveries after UNSUBSCRIBE and keeps the messages queued", async () => {
    const c = await connected();
    await subscribeC2D(c);
    c.send({
      cmd: "unsubscribe",
      messageId: 2,
      unsubscriptions: ["devices/dev1/messages/devicebound/#"],
    } as never);
    expect(await c.next()).toMatchObject({ cmd: "unsuback", messageId: 2 });
    await hub.delivery.sendC2D("dev1", { body: Buffer.from("held") });
    await expect(c.next(500)).rejects.toThrow(/no packet/);
    expect((await hub.store.stats()).queues.find((q) => q.name === "$c2d/dev1")?.count).toBe(1);
  });
});
