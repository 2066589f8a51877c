import { randomBytes } from "node:crypto";
import { join } from "node:path";
import mqtt from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { EVENTS_QUEUE } from "../../ts/index.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";
import { deviceConnect, rawClient } from "../helpers/mqtt-raw.js";

/** Deterministic PRNG so a failing run can be replayed from its seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe("MQTT head under random and mutated packets", () => {
  it("stays up, answers a well-behaved client afterwards, and leaks no connection state", async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const rand = rng(seed);
    const hub = await startHub(join(await tempDir(), "hub"));
    const key =
      (await hub.registry.createDevice({ deviceId: "dev1" })).authentication.symmetricKey?.primaryKey ?? "";
    const connect = mqtt.generate(deviceConnect("dev1", key, { keepalive: 30 }) as never);
    const templates = [
      mqtt.generate({
        cmd: "publish",
        topic: "devices/dev1/messages/events/a=1",
        payload: Buffer.from("x"),
        qos: 1,
        messageId: 1,
        retain: false,
        dup: false,
      } as never),
      mqtt.generate({
        cmd: "subscribe",
        messageId: 2,
        subscriptions: [{ topic: "$iothub/twin/res/#", qos: 0 }],
      } as never),
      mqtt.generate({
        cmd: "publish",
        topic: "$iothub/twin/GET/?$rid=1",
        payload: Buffer.alloc(0),
        qos: 0,
        retain: false,
        dup: false,
      } as never),
      mqtt.generate({ cmd: "pingreq" } as never),
    ];
    const mutate = (b: Buffer): Buffer => {
      const out = Buffer.from(b);
      const flips = 1 + Math.floor(rand() * 4);
      for (let i = 0; i < flips; i++) out[Math.floor(rand() * out.length)] = Math.floor(rand() * 256);
      return rand() < 0.2 ? out.subarray(0, Math.floor(rand() * out.length)) : out;
    };
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        Array.from({ length: 15 }, async () => {
          const c = await rawClient(hub.ports.mqtts, hub.caCertificate);
          const kind = rand();
          if (kind < 0.3) c.sendBytes(randomBytes(1 + Math.floor(rand() * 300)));
          else if (kind < 0.5) c.sendBytes(mutate(connect));
          else {
            c.sendBytes(connect);
            for (let i = 0; i < 3; i++)
              c.sendBytes(mutate(templates[Math.floor(rand() * templates.length)] as Buffer));
          }
          await Promise.race([c.closed, new Promise((r) => setTimeout(r, 100))]);
          c.end();
        }),
      );
    }
    await eventually(
      `no connection state left (seed ${seed})`,
      () => hub.openConnections === 0 && hub.connectedClients.length === 0,
    );
    const ok = await rawClient(hub.ports.mqtts, hub.caCertificate);
    ok.sendBytes(connect);
    expect(await ok.next()).toMatchObject({ cmd: "connack", returnCode: 0 });
    ok.sendBytes(templates[0] as Buffer);
    expect(await ok.next()).toMatchObject({ cmd: "puback", messageId: 1 });
    const bodies = (await hub.store.read(EVENTS_QUEUE, { limit: 10_000 })).map((m) => m.properties["$.cdid"]);
    expect(bodies.every((d) => d === "dev1")).toBe(true);
    ok.end();
  }, 60_000);
});
