/**
 * Issue 14, item 2: a `__proto__` key in wire input never reaches a prototype. Each attack
 * goes through the real hub (raw MQTT over TLS, the service API over HTTPS) in this
 * process, so a polluted `Object.prototype` would be visible here.
 */
import { join } from "node:path";
import type { Packet } from "mqtt-packet";
import { afterEach, describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { pollution } from "../helpers/adversarial.js";
import { childOf, edgeIdentity, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";
import { answers, c2dListener, connectedRaw, publishQos1, type RawClient } from "../helpers/mqtt-raw.js";
import { call } from "../helpers/service.js";

afterEach(() => {
  pollution();
});

async function device(hub: EdgeHub, deviceId: string): Promise<RawClient> {
  const d = await hub.registry.createDevice({ deviceId });
  return connectedRaw(
    hub.ports.mqtts,
    hub.caCertificate,
    deviceId,
    d.authentication.symmetricKey?.primaryKey ?? "",
  );
}

/** Sends a reported patch (raw bytes) and returns the hub's answer topic. */
async function patchReported(c: RawClient, json: string, rid: number): Promise<string> {
  c.send({
    cmd: "subscribe",
    messageId: rid,
    subscriptions: [{ topic: "$iothub/twin/res/#", qos: 0 }],
  } as Packet);
  c.send({
    cmd: "publish",
    topic: `$iothub/twin/PATCH/properties/reported/?$rid=${rid}`,
    payload: Buffer.from(json),
    qos: 0,
    retain: false,
    dup: false,
  } as Packet);
  for (;;) {
    const p = await c.next();
    if (p === "closed") throw new Error("hub closed the connection");
    if (p.cmd === "publish" && answers(p.topic, rid)) return p.topic;
  }
}

/** The topic of the next PUBLISH the hub sends `c`. */
async function nextPublishTopic(c: RawClient): Promise<string> {
  for (;;) {
    const p = await c.next();
    if (p === "closed") throw new Error("connection closed");
    if (p.cmd === "publish") return p.topic;
  }
}

describe("prototype pollution through the hub", () => {
  it("keeps a device's reported `__proto__` as plain data, and no C2D topic of another device carries it", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const attacker = await device(hub, "attacker");
    const answer = await patchReported(attacker, '{"__proto__":{"polluted":"yes"}}', 7);
    const victim = await hub.registry.createDevice({ deviceId: "victim" });
    const c2d = await c2dListener(hub, "victim", victim.authentication.symmetricKey?.primaryKey ?? "", 1);
    const topic = await nextPublishTopic(c2d);
    expect(topic).toMatch(/^devices\/victim\/messages\/devicebound\//);
    expect(topic).not.toContain("polluted");
    expect(pollution()).toEqual([]);
    // IoT Hub's key rules (no '.', '$', space, control characters) allow the name: it is data.
    expect(answer).toMatch(/^\$iothub\/twin\/res\/204\//);
    const twin = await call(hub, "GET", "/twins/attacker");
    expect(
      JSON.stringify((twin.body as { properties: { reported: unknown } }).properties.reported),
    ).toContain('"__proto__":{"polluted":"yes"}');
    c2d.end();
    attacker.end();
  });

  it("keeps a `__proto__` message property as data through the service API: telemetry read back, C2D sent", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const sender = await device(hub, "sender");
    expect(
      await publishQos1(sender, "devices/sender/messages/events/__proto__=p&a=1", Buffer.from("x")),
    ).toBe(true);
    const events = (await call(hub, "GET", "/messages/events")).body as {
      messages: Array<{ properties: Record<string, string> }>;
    };
    expect(events.messages.map((m) => Object.entries(m.properties))).toEqual([
      [
        ["__proto__", "p"],
        ["a", "1"],
      ],
    ]);
    const receiver = await hub.registry.createDevice({ deviceId: "receiver" });
    const c2d = await c2dListener(hub, "receiver", receiver.authentication.symmetricKey?.primaryKey ?? "", 0);
    const sent = await call(hub, "POST", "/devices/receiver/messages/deviceBound", Buffer.from("cmd"), {
      "iothub-app-__proto__": "q",
    });
    expect(sent.status).toBeLessThan(300);
    expect(await nextPublishTopic(c2d)).toContain("__proto__=q");
    expect(pollution()).toEqual([]);
    c2d.end();
    sender.end();
  });

  it("lets plain devices log in after a device reported `{__proto__: {moduleId}}`", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const attacker = await device(hub, "attacker");
    expect(await patchReported(attacker, '{"__proto__":{"moduleId":"x"}}', 3)).toMatch(/\/204\//);
    const plain = await device(hub, "plain");
    expect(pollution()).toEqual([]);
    plain.end();
    attacker.end();
  });

  it("lets plain devices log in after a service-side desired and tags patch with `__proto__` and `constructor`", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    await hub.registry.createDevice({ deviceId: "target" });
    const body = Buffer.from(
      '{"tags":{"__proto__":{"moduleId":"x"}},"properties":{"desired":{"__proto__":{"moduleId":"x"},"constructor":{"prototype":{"moduleId":"y"}}}}}',
    );
    const reply = await call(hub, "PATCH", "/twins/target", body);
    const plain = await device(hub, "plain");
    expect(pollution()).toEqual([]);
    expect(reply.status).toBe(200);
    const twin = (await call(hub, "GET", "/twins/target")).body as Record<string, Record<string, unknown>>;
    expect(JSON.stringify(twin.tags)).toBe('{"__proto__":{"moduleId":"x"}}');
    plain.end();
  });

  it("carries `__proto__` as data both ways through an edge hub: reported up to the root, desired down to the child", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "thermo");
    const plainKey = await childOf(root, "edge1", "plain");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    await eventually("online", () => edge.upstream?.online === true);
    const child = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "thermo", key);
    child.send({
      cmd: "subscribe",
      messageId: 2,
      subscriptions: [{ topic: "$iothub/twin/PATCH/properties/desired/#", qos: 0 }],
    } as Packet);
    expect(
      await patchReported(child, '{"__proto__":{"moduleId":"x"},"constructor":{"prototype":{"p":1}}}', 5),
    ).toMatch(/\/204\//);
    await eventually("reported at the root", async () =>
      JSON.stringify((await root.twins.get("thermo")).reported.properties).includes(
        '"__proto__":{"moduleId":"x"}',
      ),
    );
    const reply = await call(
      root,
      "PATCH",
      "/twins/thermo",
      Buffer.from('{"properties":{"desired":{"__proto__":{"polluted":"yes"}}}}'),
    );
    expect(reply.status).toBe(200);
    let desired: Packet | "closed";
    do desired = await child.next();
    while (desired !== "closed" && !(desired.cmd === "publish" && desired.topic.includes("/desired/")));
    expect(desired !== "closed" && desired.cmd === "publish" && desired.payload.toString()).toContain(
      '"__proto__":{"polluted":"yes"}',
    );
    const plain = await connectedRaw(edge.ports.mqtts, edge.caCertificate, "plain", plainKey);
    expect(pollution()).toEqual([]);
    plain.end();
    child.end();
  });
});
