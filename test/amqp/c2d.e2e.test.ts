import { join } from "node:path";
import type { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { amqpModule } from "../helpers/amqp.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, deviceClient, startHub } from "../helpers/hub.js";

describe("cloud-to-device messages to the official device SDK over AMQP", () => {
  it("completes on accepted, drops on rejected, sends again on released (abandon), in order", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const client = await deviceClient(hub, "lamp", undefined, "amqp");
    await client.open();
    const got: { body: string; messageId: unknown; k: unknown }[] = [];
    let abandoned = false;
    client.on("message", (m: Message) => {
      const body = m.getData().toString();
      got.push({ body, messageId: m.messageId, k: m.properties.getValue("k") });
      if (body === "reject-me") void client.reject(m);
      else if (body === "abandon-me" && !abandoned) {
        abandoned = true;
        void client.abandon(m);
      } else void client.complete(m);
    });
    // One at a time: the SDK's rhea merges the dispositions of two deliveries settled in one
    // turn into the first one's outcome (its `write_dispositions`), which would turn a
    // release into a reject before it reaches the hub.
    for (const [offset, body] of ["complete-me", "reject-me", "abandon-me"].entries()) {
      await hub.delivery.sendC2D("lamp", {
        body: Buffer.from(body),
        messageId: `id-${body}`,
        properties: { k: "v" },
      });
      await eventually(`${body} settled`, async () =>
        (await hub.store.stats()).queues.some((q) => q.name === "$c2d/lamp" && q.ackedUpTo === offset),
      );
    }
    expect(got.map((g) => g.body)).toEqual(["complete-me", "reject-me", "abandon-me", "abandon-me"]);
    expect(got[0]).toEqual({ body: "complete-me", messageId: "id-complete-me", k: "v" });
  });

  it("delivers what was queued while the device was away once it listens, and again what it never settled", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "valve" });
    await hub.delivery.sendC2D("valve", { body: Buffer.from("queued") });
    const first = await deviceClient(hub, "valve", undefined, "amqp");
    await first.open();
    const seen: string[] = [];
    // Takes it and never settles it, then goes away.
    first.on("message", (m: Message) => void seen.push(`first:${m.getData().toString()}`));
    await eventually("delivered to the first connection", () => seen.length === 1);
    await first.close();
    const second = await deviceClient(hub, "valve", undefined, "amqp");
    await second.open();
    second.on("message", (m: Message) => {
      seen.push(`second:${m.getData().toString()}`);
      void second.complete(m);
    });
    await eventually("completed by the second", async () =>
      (await hub.store.stats()).queues.some((q) => q.name === "$c2d/valve" && q.ackedUpTo === 0),
    );
    expect(seen).toEqual(["first:queued", "second:queued"]);
  });
});

describe("module inputs to the official module SDK over AMQP", () => {
  it("arrive with their input name, and are removed once completed", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const module = await amqpModule(hub, "gw", "filter");
    await module.open();
    const got: string[] = [];
    module.on("inputMessage", (input: string, m: Message) => {
      got.push(`${input}:${m.getData().toString()}`);
      void module.complete(m);
    });
    await hub.delivery.sendToInput("gw", "filter", "in1", {
      body: Buffer.from("21.5"),
      properties: { unit: "C" },
    });
    await eventually("completed", async () =>
      (await hub.store.stats()).queues.some((q) => q.name === "$inputs/gw/filter" && q.ackedUpTo === 0),
    );
    expect(got).toEqual(["in1:21.5"]);
  });
});
