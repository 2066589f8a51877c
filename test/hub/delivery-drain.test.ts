/**
 * The delivery drain against a real store whose reads the test can hold (a failure fake
 * around the real one): a message stored while the drain was reading, for a client that
 * holds its PUBACKs until it has everything (as the C2D relay's strict parent test does).
 */
import { describe, expect, it } from "vitest";
import { type DeliveryTarget, DeviceDelivery, type Settled } from "../../ts/delivery/device-delivery.js";
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
      deliverMessage: (m) => {
        sent.push(m.body.toString());
        return new Promise<Settled>(() => undefined);
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

  it("a client that stops listening and listens again on the same connection gets the rest, and nothing twice", async () => {
    const store = await openStore(await tempDir());
    const sent: { body: string; dup: boolean; ack: () => void }[] = [];
    let listening = true;
    const target: DeliveryTarget = {
      listensForDeliveries: () => listening,
      deliverMessage: (m, dup) =>
        new Promise<Settled>((resolve) =>
          sent.push({ body: m.body.toString(), dup, ack: () => resolve("completed") }),
        ),
    };
    const delivery = new DeviceDelivery(store, () => target, silentLogger);
    for (const b of ["one", "two"]) await delivery.sendC2D("lamp", { body: Buffer.from(b) });
    await eventually("two sent", () => sent.length === 2);
    listening = false;
    delivery.pump("lamp");
    await delivery.sendC2D("lamp", { body: Buffer.from("three") });
    // Acknowledged while not listening: still completed and acknowledged in the store.
    for (const s of sent) s.ack();
    await eventually("acknowledged", async () =>
      (await store.stats()).queues.some((q) => q.name === "$c2d/lamp" && q.ackedUpTo === 1),
    );
    expect(sent.map((s) => s.body)).toEqual(["one", "two"]);
    listening = true;
    delivery.pump("lamp");
    await eventually("three sent", () => sent.length === 3);
    expect(sent.map((s) => `${s.body}${s.dup ? " (dup)" : ""}`)).toEqual(["one", "two", "three"]);
  });

  it("a new connection gets what the old one did not acknowledge, with DUP set, and not what it did", async () => {
    const store = await openStore(await tempDir());
    const sent: { conn: number; body: string; dup: boolean }[] = [];
    const pending: { resolve: () => void; reject: (e: Error) => void }[] = [];
    const connection = (conn: number): DeliveryTarget => ({
      listensForDeliveries: () => true,
      deliverMessage: (m, dup) =>
        new Promise<Settled>((resolve, reject) => {
          sent.push({ conn, body: m.body.toString(), dup });
          pending.push({ resolve: () => resolve("completed"), reject });
        }),
    });
    let current = connection(1);
    const delivery = new DeviceDelivery(store, () => current, silentLogger);
    for (const b of ["one", "two", "three"]) await delivery.sendC2D("lamp", { body: Buffer.from(b) });
    await eventually("three sent", () => sent.length === 3);
    const [first, ...rest] = pending.splice(0);
    first?.resolve();
    await eventually("one acknowledged", async () =>
      (await store.stats()).queues.some((q) => q.name === "$c2d/lamp" && q.ackedUpTo === 0),
    );
    // The connection closes; the client connects again.
    for (const p of rest) p.reject(new Error("connection closed"));
    current = connection(2);
    delivery.pump("lamp");
    await eventually("resent", () => sent.length === 5);
    expect(sent.slice(3)).toEqual([
      { conn: 2, body: "two", dup: true },
      { conn: 2, body: "three", dup: true },
    ]);
  });

  it("an abandoned message is sent again before the ones after it, then completed once", async () => {
    const store = await openStore(await tempDir());
    const sent: { body: string; dup: boolean }[] = [];
    const settle: ((s: Settled) => void)[] = [];
    const target: DeliveryTarget = {
      listensForDeliveries: () => true,
      deliverMessage: (m, dup) => {
        sent.push({ body: m.body.toString(), dup });
        // The first two wait for the test; what comes again is completed at once.
        return sent.length <= 2
          ? new Promise<Settled>((resolve) => settle.push(resolve))
          : Promise.resolve("completed");
      },
    };
    const delivery = new DeviceDelivery(store, () => target, silentLogger);
    for (const b of ["one", "two"]) await delivery.sendC2D("lamp", { body: Buffer.from(b) });
    await eventually("two sent", () => sent.length === 2);
    // The client gives "one" back (AMQP released) and completes "two".
    settle[0]?.("abandoned");
    settle[1]?.("completed");
    await eventually("both acknowledged", async () =>
      (await store.stats()).queues.some((q) => q.name === "$c2d/lamp" && q.ackedUpTo === 1),
    );
    expect(sent[2]).toEqual({ body: "one", dup: true });
    expect(sent.filter((s) => s.body === "one")).toHaveLength(2);
  });
});
