/**
 * C2D feedback `Expired` and `Purged` (ts/amqp/links/feedback-pending.ts): read with the
 * official service client's feedback receiver, for messages it sent with each `ack`, to a
 * device that never completes them (away, or purged), and across a restart.
 */
import { join } from "node:path";
import type { Message as ServiceMessage } from "azure-iot-common";
import type { Message } from "azure-iot-device";
import type { Client } from "azure-iothub";
import { describe, expect, it } from "vitest";
import { PENDING_NS } from "../../ts/amqp/links/feedback-pending.js";
import type { EdgeHub } from "../../ts/index.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { deviceClient, startHub, stopHub } from "../helpers/hub.js";
import { call } from "../helpers/service.js";
import { c2d, feedbackRecords, serviceClient } from "../helpers/service-amqp.js";

/** A C2D message with `ack` that expires `secs` from now. */
function expiring(id: string, ack: string, secs: number) {
  const m = c2d(`body of ${id}`, id, ack);
  // Milliseconds since the epoch: azure-iothub's own rhea encodes the AMQP timestamp from a number only.
  m.expiryTimeUtc = Date.now() + secs * 1000;
  return m;
}

/** Sends `away` one message with each ack: n1 negative, f1 full, p1 positive, x1 none. */
async function sendEachAck(
  service: Client,
  make: (id: string, ack: string) => ServiceMessage,
): Promise<void> {
  for (const [id, ack] of [
    ["n1", "negative"],
    ["f1", "full"],
    ["p1", "positive"],
    ["x1", "none"],
  ])
    await service.send("away", make(id as string, ack as string));
}

/** `[originalMessageId, statusCode, description]` of each record, by message id. */
const byId = (records: Array<Record<string, unknown>>) =>
  records
    .map((r) => [r.originalMessageId, r.statusCode, r.description])
    .sort((a, b) => String(a[0]).localeCompare(String(b[0])));

/** Device `away` connected over AMQP, completing each C2D message; the ids it got. */
async function completing(hub: EdgeHub): Promise<string[]> {
  const device = await deviceClient(hub, "away", undefined, "amqp");
  const got: string[] = [];
  device.on("message", (m: Message) => {
    got.push(String(m.messageId));
    void device.complete(m);
  });
  await device.open();
  return got;
}

/** The messages the hub watches for their expiry. */
const watched = async (hub: EdgeHub) => (await hub.store.kv.scan(PENDING_NS)).length;

describe("C2D feedback Expired", () => {
  it("is given for a message whose TTL passes before the device completes it, when its ack asks for negative feedback", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    await hub.registry.createDevice({ deviceId: "away" });
    const service = serviceClient(hub);
    const records = await feedbackRecords(service);
    // The device is away: nothing completes them. Only negative and full ask for Expired.
    await sendEachAck(service, (id, ack) => expiring(id, ack, 1));
    // One that does not expire yet: no record for it.
    await service.send("away", expiring("later", "full", 3600));
    expect(await watched(hub)).toBe(3);
    await eventually("two Expired records", () => records.length >= 2);
    expect(byId(records)).toEqual([
      ["f1", "Expired", "Expired"],
      ["n1", "Expired", "Expired"],
    ]);
    for (const r of records) expect(r.deviceId).toBe("away");
    await eventually("only `later` watched", async () => (await watched(hub)) === 1);

    // The device comes: it gets the one left, and completing it gives Success, not Expired.
    const got = await completing(hub);
    await eventually("Success of `later`", () => records.length === 3);
    expect(got).toEqual(["later"]);
    expect(records[2]).toMatchObject({ originalMessageId: "later", statusCode: "Success" });
    await eventually("nothing watched", async () => (await watched(hub)) === 0);
  });

  it("keeps watching across a restart: a message that expires while the hub is down gets its record after", async () => {
    const dataDir = join(await tempDir(), "hub");
    const hub = await startHub(dataDir);
    await hub.registry.createDevice({ deviceId: "away" });
    await serviceClient(hub).send("away", expiring("n1", "negative", 1));
    expect(await watched(hub)).toBe(1);
    await stopHub(hub);
    const again = await startHub(dataDir);
    const records = await feedbackRecords(serviceClient(again));
    await eventually("the Expired record", () => records.length === 1);
    expect(records[0]).toMatchObject({ originalMessageId: "n1", deviceId: "away", statusCode: "Expired" });
    await eventually("nothing watched", async () => (await watched(again)) === 0);
  });
});

describe("C2D feedback Purged (DELETE /devices/{id}/commands)", () => {
  it("purges the device's queue, answers how many, and gives Purged for those whose ack asks for negative feedback", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    await hub.registry.createDevice({ deviceId: "away" });
    const service = serviceClient(hub);
    const records = await feedbackRecords(service);
    await sendEachAck(service, (id, ack) => c2d(`body of ${id}`, id, ack));
    expect(await call(hub, "DELETE", "/devices/away/commands")).toEqual({
      status: 200,
      body: { deviceId: "away", totalMessagesPurged: 4 },
    });
    await eventually("two Purged records", () => records.length >= 2);
    expect(byId(records)).toEqual([
      ["f1", "Purged", "Purged"],
      ["n1", "Purged", "Purged"],
    ]);
    await eventually("nothing watched", async () => (await watched(hub)) === 0);

    // The queue is empty and still serves: the device gets only what is sent after the purge.
    await service.send("away", c2d("after", "a1", "positive"));
    const got = await completing(hub);
    await eventually("Success of a1", () => records.length === 3);
    expect(got).toEqual(["a1"]);
    expect(await call(hub, "DELETE", "/devices/away/commands")).toEqual({
      status: 200,
      body: { deviceId: "away", totalMessagesPurged: 0 },
    });
  });

  it("answers 404 DeviceNotFound for an unknown device", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const reply = await call(hub, "DELETE", "/devices/nobody/commands");
    expect(reply.status).toBe(404);
    expect((reply.body as { Message: string }).Message).toMatch(/^ErrorCode:DeviceNotFound;/);
  });
});
