/**
 * The delivery drain against a real store whose reads the test can hold (a failure fake
 * around the real one): a message stored while the drain was reading, for a client that
 * holds its PUBACKs until it has everything (as the C2D relay's strict parent test does).
 */
import { describe, expect, it } from "vitest";
import { type DeliveryTarget, DeviceDelivery } from "../../ts/delivery/device-delivery.js";
import type { MessageStore } from "../../ts/index.js";
import { silentLogger } from "../../ts/log.js";
import { eventually, openStore, tempDir } from "../helpers/fixtures.js";

describe("delivery drain", () => {
  it("a message stored while the drain reads is delivered, although the client acknowledges nothing yet", async () => {
    const store = await openStore(await tempDir());
    let reads = 0;
    let release: (() => void) | undefined;
    // The second read (after the first message went out and the second was stored) waits for the test.
    const held: MessageStore = Object.assign(Object.create(null) as MessageStore, {
      append: store.append.bind(store),
      ack: store.ack.bind(store),
      stats: store.stats.bind(store),
      read: async (queue: string, o?: Parameters<MessageStore["read"]>[1]) => {
        const got = await store.read(queue, o);
        if (++reads === 2) await new Promise<void>((resolve) => (release = resolve));
        return got;
      },
    });
    const sent: string[] = [];
    // A client that takes everything and completes nothing (yet).
    const target: DeliveryTarget = {
      listensForDeliveries: () => true,
      deliverQos1: (_topic, payload) => {
        sent.push(payload.toString());
        return new Promise<void>(() => undefined);
      },
    };
    const delivery = new DeviceDelivery(held, () => target, silentLogger);
    await delivery.sendC2D("lamp", { body: Buffer.from("one") });
    await eventually("the first sent", () => sent.length === 1);
    // Stored: the waiting drain wakes and reads; that read is held.
    await delivery.sendC2D("lamp", { body: Buffer.from("two") });
    await eventually("the next read held", () => release !== undefined);
    // Stored while the drain reads (it has "two" only): nothing is waiting to be woken.
    await delivery.sendC2D("lamp", { body: Buffer.from("three") });
    release?.();
    await eventually("all three sent", () => sent.length === 3);
    expect(sent).toEqual(["one", "two", "three"]);
  });
});
