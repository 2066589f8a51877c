import mqtt from "mqtt";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { startEdge } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { Mosquitto } from "../helpers/mosquitto.js";
import { connectedRaw, publishSeq, type RawClient } from "../helpers/mqtt-raw.js";
import { freePort } from "../helpers/process.js";

interface Got {
  topic: string;
  body: string;
  props: Record<string, string | string[]>;
}

/** A persistent MQTT 5 subscriber to `edgehub/#` on the broker, collecting what arrives. */
async function subscriber(broker: Mosquitto): Promise<{ got: Got[]; end: () => Promise<void> }> {
  const got: Got[] = [];
  const client = mqtt.connect({
    protocol: "mqtts",
    host: "localhost",
    port: broker.port,
    ca: broker.ca,
    protocolVersion: 5,
    clientId: "backend",
    clean: false,
    properties: { sessionExpiryInterval: 3600 },
    reconnectPeriod: 200,
  });
  client.on("message", (topic, payload, packet) => {
    const props = (packet.properties?.userProperties ?? {}) as Record<string, string | string[]>;
    got.push({ topic, body: payload.toString(), props });
  });
  client.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () =>
      client.subscribe("edgehub/#", { qos: 1 }, (err) => (err ? reject(err) : resolve())),
    );
  });
  return { got, end: () => client.endAsync(true) };
}

/** An edge hub whose parent is `broker`, publishing on the topic template `topic`. */
async function bridgeEdge(broker: Mosquitto, topic: string): Promise<EdgeHub> {
  return startEdge(await tempDir(), {
    type: "mqtt",
    hostname: "localhost",
    port: broker.port,
    deviceId: "edge-bridge",
    caFile: broker.caFile,
    topic,
    keepaliveSecs: 2,
    ackTimeoutMs: 2000,
    maxBackoffMs: 300,
  });
}

async function publish(c: RawClient, deviceId: string, seq: number): Promise<void> {
  expect(await publishSeq(c, deviceId, seq, undefined, "&%24.ct=text%2Fplain")).toBe(true);
}

describe("MQTT broker as the parent", () => {
  it("forwards to Mosquitto with a topic template and user properties, and stores and forwards through a broker outage", async () => {
    const broker = await Mosquitto.start(await tempDir(), await freePort());
    const backend = await subscriber(broker);
    const edge = await bridgeEdge(broker, "edgehub/{deviceId}/{moduleId}/events");
    // Towards a broker the hub keeps its own registry.
    const leaf = await edge.registry.createDevice({ deviceId: "leaf1" });
    const c = await connectedRaw(
      edge.ports.mqtts,
      edge.caCertificate,
      "leaf1",
      leaf.authentication.symmetricKey?.primaryKey ?? "",
    );

    for (let i = 0; i < 10; i++) await publish(c, "leaf1", i);
    await eventually("10 at the broker", () => backend.got.length >= 10);
    expect(backend.got[0]).toMatchObject({
      topic: "edgehub/leaf1/events",
      body: "m0",
      props: { seq: "0", "$.ct": "text/plain", "$.cdid": "leaf1" },
    });

    await broker.stop("SIGTERM");
    await eventually("edge offline", () => edge.upstream?.online === false);
    for (let i = 10; i < 30; i++) await publish(c, "leaf1", i);
    await broker.restart();
    await eventually("all 30 at the broker", () => new Set(backend.got.map((g) => g.body)).size >= 30);
    const firsts = [...new Set(backend.got.map((g) => g.body))];
    expect(firsts).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`));
    c.end();
    await backend.end();
  });

  it("escapes ids that MQTT would take for wildcards or levels, dead-letters a message whose topic can never be valid or that the broker can never take, and keeps every device's messages flowing", async () => {
    const broker = await Mosquitto.start(await tempDir(), await freePort(), ["max_packet_size 8192"]);
    const backend = await subscriber(broker);
    const edge = await bridgeEdge(broker, "edgehub/{deviceId}/{outputName}");
    const connect = async (deviceId: string) => {
      const d = await edge.registry.createDevice({ deviceId });
      const key = d.authentication.symmetricKey?.primaryKey ?? "";
      return connectedRaw(edge.ports.mqtts, edge.caCertificate, deviceId, key);
    };
    const odd = await connect("a+b#c");
    const plain = await connect("leaf1");

    for (let i = 0; i < 5; i++) {
      await publish(odd, "a+b#c", i);
      await publish(plain, "leaf1", 100 + i);
    }
    // An output name that escapes to more than MQTT's 65,535 topic bytes.
    expect(await publishSeq(plain, "leaf1", 105, undefined, `&%24.on=${"+".repeat(30_000)}`)).toBe(true);
    for (let i = 106; i < 108; i++) await publish(plain, "leaf1", i);
    // Larger than the broker's Maximum Packet Size (it would drop the connection for it).
    expect(await publishSeq(plain, "leaf1", 108, Buffer.alloc(10_000, 1))).toBe(true);
    await publish(plain, "leaf1", 109);

    await eventually(
      "all 13 sendable at the broker",
      () => new Set(backend.got.map((g) => g.body)).size >= 13,
    );
    const topics = new Map(backend.got.map((g) => [g.body, g.topic]));
    expect(topics.get("m0")).toBe("edgehub/a%2Bb%23c");
    expect(topics.get("m100")).toBe("edgehub/leaf1");
    const plainBodies = backend.got.filter((g) => g.topic === "edgehub/leaf1").map((g) => g.body);
    expect([...new Set(plainBodies)]).toEqual([100, 101, 102, 103, 104, 106, 107, 109].map((i) => `m${i}`));
    await eventually(
      "two dead letters",
      async () => (await edge.store.read("$deadletter", { from: 0 })).length >= 2,
    );
    const dead = await edge.store.read("$deadletter", { from: 0 });
    expect(dead.map((m) => m.properties.seq)).toEqual(["105", "108"]);
    expect(dead[0]?.properties["$.dlr"]).toMatch(/over MQTT's 65535/);
    expect(dead[1]?.properties["$.dlr"]).toMatch(/maximum packet size of 8192/);
    expect(edge.upstream?.stats().deadLettered).toBe(2);
    odd.end();
    plain.end();
    await backend.end();
  });
});
