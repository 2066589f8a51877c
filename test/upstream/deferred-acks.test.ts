/**
 * The upstream MQTT client's inbound QoS 1 (issue 12, gap 8): a deferred PUBLISH is
 * PUBACKed when its owner completes it, every PUBACK in arrival order (MQTT-4.6.0-2), and a
 * link keeps its session (clean false) and drops filters a kept session holds that nobody
 * wants. Against a real TLS socket (the scripted raw parent).
 */
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { Link } from "../../ts/upstream/link.js";
import { type Inbound, MqttClient } from "../../ts/upstream/mqtt-client.js";
import { eventually } from "../helpers/fixtures.js";
import { recordingLogger } from "../helpers/hub.js";
import { RawParent } from "../helpers/raw-parent.js";

const publish = (messageId: number, topic: string, dup = false): Packet =>
  ({
    cmd: "publish",
    topic,
    payload: Buffer.from(`p${messageId}`),
    qos: 1,
    messageId,
    retain: false,
    dup,
  }) as Packet;

const pubacks = (parent: RawParent) =>
  parent.received.filter((r) => r.cmd === "puback").map((r) => r.messageId);

describe("deferred PUBACKs", () => {
  it("go in arrival order once completed; a QoS 1 PUBLISH not deferred waits behind earlier deferred ones; DUP is passed on", async () => {
    const parent = await RawParent.start();
    const client = new MqttClient({
      host: "localhost",
      port: parent.port,
      clientId: "leaf1",
      keepaliveSecs: 30,
      ca: Buffer.from(parent.ca),
      clean: false,
      deferAcks: (t) => t.startsWith("c2d/"),
    });
    await new Promise<void>((resolve) => client.once("connect", () => resolve()));
    expect(parent.connects.at(-1)?.clean).toBe(false);
    const got: Array<{ topic: string; inbound: Inbound | undefined }> = [];
    client.on("message", (topic, _payload, inbound) => void got.push({ topic, inbound }));
    parent.sendTo("leaf1", publish(1, "c2d/a"));
    parent.sendTo("leaf1", publish(2, "c2d/b", true));
    parent.sendTo("leaf1", publish(3, "other"));
    parent.sendTo("leaf1", publish(4, "c2d/c"));
    await eventually("four PUBLISHes", () => got.length === 4);
    expect(got.map((g) => g.inbound === undefined)).toEqual([false, false, true, false]);
    expect(got[1]?.inbound?.dup).toBe(true);

    got[3]?.inbound?.complete();
    got[1]?.inbound?.complete();
    got[1]?.inbound?.complete();
    // A round trip the parent answers: anything the client had written before is read by now.
    await new Promise<void>((resolve) => client.subscribe([{ topic: "x", qos: 0 }], () => resolve()));
    expect(pubacks(parent)).toEqual([]);
    got[0]?.inbound?.complete();
    await eventually("all four PUBACKs", () => pubacks(parent).length === 4);
    expect(pubacks(parent)).toEqual([1, 2, 3, 4]);
    client.destroy("done");
  });

  it("a link with a kept session subscribes its QoS 1 filter, and unsubscribes the filters a present session holds that it does not want", async () => {
    const parent = await RawParent.start();
    parent.sessionPresent = () => true;
    const link = new Link(
      "leaf1",
      () => ({ host: "localhost", port: parent.port, clientId: "leaf1", ca: Buffer.from(parent.ca) }),
      { maxBackoffMs: 200, keepaliveSecs: 30, ackTimeoutMs: 5000 },
      recordingLogger(),
      ["responses/#"],
      undefined,
      { persistent: true, deferAcks: (t) => t.startsWith("c2d/"), optional: () => ["methods/#", "c2d/#"] },
    );
    link.listenTo("c2d/#", undefined, 1);
    const deferred: Inbound[] = [];
    link.on("deferred", (_t, _p, inbound) => void deferred.push(inbound));
    link.start();
    await eventually("up", () => link.up);
    expect(parent.connects.at(-1)?.clean).toBe(false);
    expect(
      parent.received.filter((r) => r.cmd !== "puback").map((r) => `${r.cmd} ${r.topics.join(",")}`),
    ).toEqual(["unsubscribe methods/#", "subscribe responses/#@0,c2d/#@1"]);
    parent.sendTo("leaf1", publish(9, "c2d/x"));
    await eventually("taken by the listener", () => deferred.length === 1);
    deferred[0]?.complete();
    await eventually("its PUBACK", () => pubacks(parent).length === 1);
    link.close();
  });

  it("a deferred PUBLISH nobody takes stays unacknowledged; the next listener gets a fresh connection (the parent sends it again)", async () => {
    const parent = await RawParent.start();
    const link = new Link(
      "leaf1",
      () => ({ host: "localhost", port: parent.port, clientId: "leaf1", ca: Buffer.from(parent.ca) }),
      { maxBackoffMs: 200, keepaliveSecs: 30, ackTimeoutMs: 5000 },
      recordingLogger(),
      [],
      undefined,
      { persistent: true, deferAcks: (t) => t.startsWith("c2d/") },
    );
    link.start();
    await eventually("up", () => link.up);
    parent.sendTo("leaf1", publish(1, "c2d/x"));
    // Sync on a round trip: a SUBSCRIBE of another filter is answered after the PUBLISH was read.
    await new Promise<void>((resolve) => link.listenTo("other/#", resolve));
    expect(pubacks(parent)).toEqual([]);
    const connects = parent.connects.length;
    link.on("deferred", () => undefined);
    link.listenTo("c2d/#", undefined, 1);
    await eventually("connected again", () => parent.connects.length === connects + 1 && link.up);
    expect(pubacks(parent)).toEqual([]);
    link.close();
  });
});
