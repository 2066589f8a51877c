/**
 * The Event Hubs–compatible endpoint with a plain rhea client, for what @azure/event-hubs never
 * sends or cannot show: links without a token, filters outside its grammar, a sender, the
 * client's credit, the bound on readers, and a token that expires while a reader is attached.
 */
import { join } from "node:path";
import { type Client, Message } from "azure-iot-device";
import rhea, { type Message as AmqpMessage, type EventContext, type Receiver } from "rhea";
import { describe, expect, it } from "vitest";
import { MAX_READERS_PER_CONNECTION } from "../../ts/amqp/event-hub/links.js";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub, HubConfigInput } from "../../ts/index.js";
import { RawAmqp } from "../helpers/amqp.js";
import { edgeIdentity, startEdge, startRoot } from "../helpers/edge.js";
import { eventHubToken, keyOf } from "../helpers/event-hubs.js";
import { tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, startHub } from "../helpers/hub.js";

const PARTITION = "telemetry/ConsumerGroups/$Default/Partitions/0";
const EARLIEST = "amqp.annotation.x-opt-offset > '-1'";

async function root(eventHub: HubConfigInput["eventHub"] = {}): Promise<EdgeHub> {
  return startHub(join(await tempDir(), "hub"), {
    ...BOTH_HEADS,
    eventHub: { name: "telemetry", ...eventHub },
  });
}

/** A rhea connection holding an Event Hubs token for `audience` (default: the whole event hub). */
async function consumer(hub: EdgeHub, audience = "sb://localhost/telemetry", secs = 3600): Promise<RawAmqp> {
  const raw = await RawAmqp.open(hub);
  expect(
    await raw.putToken(audience, eventHubToken(audience, keyOf(hub.eventHubConnectionString), secs)),
  ).toBe(200);
  return raw;
}

/** A receiver at `address` with `filter`, no credit given; its messages, and how it ended. */
function receiver(raw: RawAmqp, address: string, filter: string) {
  const link = raw.connection.open_receiver({
    source: {
      address,
      filter: { "apache.org:selector-filter:string": rhea.types.wrap_described(filter, 0x468c00000004) },
    },
    autoaccept: false,
    credit_window: 0,
  } as Parameters<typeof raw.connection.open_receiver>[0]);
  const messages: AmqpMessage[] = [];
  link.on("message", (e: EventContext) => e.message && messages.push(e.message));
  const opened = new Promise<void>((resolve) => link.once("receiver_open", () => resolve()));
  const ended = new Promise<{ condition?: string; description?: string }>((resolve) => {
    // rhea's typings leave `remote` out; the error's fields are getters (not spread).
    const done = () => {
      const error = (link as unknown as { remote?: { detach?: { error?: Record<string, string> } } }).remote
        ?.detach?.error;
      resolve({ condition: error?.condition, description: error?.description });
    };
    link.once("receiver_close", done);
    link.once("receiver_error", done);
  });
  /** Resolves once `n` messages came. */
  const until = (n: number) =>
    new Promise<AmqpMessage[]>((resolve) => {
      const check = () => {
        if (messages.length < n) return;
        link.off("message", check);
        resolve(messages.slice(0, n));
      };
      link.on("message", check);
      check();
    });
  return { link: link as Receiver, messages, opened, ended, until };
}

/** Sends events `from`…`from + n - 1` from `device` (through the router, as telemetry is stored). */
async function send(device: Client, n: number, from = 0): Promise<void> {
  for (let i = from; i < from + n; i++) {
    const m = new Message(`e${i}`);
    m.properties.add("i", String(i));
    await device.sendEvent(m);
  }
}

const seq = (ms: AmqpMessage[]) => ms.map((m) => m.message_annotations?.["x-opt-sequence-number"]);

describe("the Event Hubs-compatible endpoint with a plain AMQP client", () => {
  it("refuses a receiver without a token, a filter outside the client's grammar, and a sender (the endpoint is read-only)", async () => {
    const hub = await root({ consumerGroups: ["dashboards"] });
    const raw = await RawAmqp.open(hub);
    expect(await receiver(raw, PARTITION, EARLIEST).ended).toMatchObject({
      condition: "amqp:unauthorized-access",
    });
    const audience = `sb://localhost/${PARTITION}`;
    expect(await raw.putToken(audience, eventHubToken(audience, keyOf(hub.eventHubConnectionString)))).toBe(
      200,
    );
    for (const filter of [
      "amqp.annotation.x-opt-offset > 3",
      "amqp.annotation.x-opt-offset < '3'",
      "amqp.annotation.x-opt-sequence-number > '@latest'",
      "1=1",
    ])
      expect(await receiver(raw, PARTITION, filter).ended).toMatchObject({
        condition: "com.microsoft:argument-error",
      });
    const { ended } = await raw.sender(PARTITION);
    expect(await ended).toMatchObject({ condition: "amqp:not-allowed" });
    // A token for one partition of one group covers nothing else.
    const other = receiver(raw, "telemetry/ConsumerGroups/dashboards/Partitions/0", EARLIEST);
    expect(await other.ended).toMatchObject({ condition: "amqp:unauthorized-access" });
    // A token for another hub's name, or signed as IoT Hub device tokens are (the decoded key), is refused.
    const key = keyOf(hub.eventHubConnectionString);
    expect(
      await raw.putToken("sb://elsewhere/telemetry", eventHubToken("sb://elsewhere/telemetry", key)),
    ).toBe(401);
    const decoded = createSasToken(
      "sb://localhost/telemetry",
      key,
      Math.floor(Date.now() / 1000) + 60,
      "iothubowner",
    );
    expect(await raw.putToken("sb://localhost/telemetry", decoded)).toBe(401);
  });

  it("sends no more than the client's credit, in stored order with nothing skipped, and follows new events", async () => {
    const hub = await root();
    const d1 = await connectedDevice(hub, "d1");
    await send(d1, 5);
    const raw = await consumer(hub);
    const r = receiver(raw, PARTITION, "amqp.annotation.x-opt-sequence-number >= '1'");
    await r.opened;
    r.link.add_credit(2);
    expect(seq(await r.until(2))).toEqual([1, 2]);
    r.link.add_credit(10);
    expect(seq(await r.until(4))).toEqual([1, 2, 3, 4]);
    await send(d1, 2, 5);
    const all = await r.until(6);
    expect(seq(all)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(all.map((m) => m.message_annotations?.["x-opt-offset"])).toEqual(["1", "2", "3", "4", "5", "6"]);
    expect(all[0]?.application_properties).toEqual({ i: "1" });
    expect(all[0]?.message_annotations?.["iothub-connection-device-id"]).toBe("d1");
  });

  it("bounds the readers of the hub (eventHub.maxReceivers), and a reader that goes gives its place back", async () => {
    const hub = await root({ maxReceivers: 1 });
    const raw = await consumer(hub);
    const first = receiver(raw, PARTITION, EARLIEST);
    await first.opened;
    expect(await receiver(raw, PARTITION, EARLIEST).ended).toMatchObject({
      condition: "amqp:resource-limit-exceeded",
    });
    first.link.close();
    await first.ended;
    const again = receiver(raw, PARTITION, EARLIEST);
    await again.opened;
    await send(await connectedDevice(hub, "d1"), 1);
    again.link.add_credit(1);
    expect(seq(await again.until(1))).toEqual([0]);
  });

  it("bounds the readers of one connection", async () => {
    const hub = await root();
    const raw = await consumer(hub);
    const readers = Array.from({ length: MAX_READERS_PER_CONNECTION }, () =>
      receiver(raw, PARTITION, EARLIEST),
    );
    await Promise.all(readers.map((r) => r.opened));
    expect(await receiver(raw, PARTITION, EARLIEST).ended).toMatchObject({
      condition: "amqp:resource-limit-exceeded",
    });
    // Another connection has its own.
    await receiver(await consumer(hub), PARTITION, EARLIEST).opened;
  });

  it("is a root's: an edge hub has no connection string, refuses the tokens and serves no reader", async () => {
    const root = await startRoot(join(await tempDir(), "root"));
    const edge = await startEdge(join(await tempDir(), "edge"), await edgeIdentity(root, "gw"), {
      listen: BOTH_HEADS.listen,
      eventHub: { name: "telemetry" },
    });
    expect(edge.eventHubConnectionString).toBeUndefined();
    const raw = await RawAmqp.open(edge);
    const key = keyOf(edge.serviceConnectionString);
    const audience = "sb://127.0.0.1/telemetry";
    expect(await raw.putToken(audience, eventHubToken(audience, key))).toBe(401);
    expect(await receiver(raw, PARTITION, EARLIEST).ended).toMatchObject({ condition: "amqp:not-found" });
  });

  it("detaches a reader when the token that let it in expires", async () => {
    const hub = await root();
    const raw = await consumer(hub, "sb://localhost/telemetry", 2);
    const r = receiver(raw, PARTITION, EARLIEST);
    await r.opened;
    expect(await r.ended).toMatchObject({
      condition: "amqp:unauthorized-access",
      description: "token-expired",
    });
  });
});
