import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type EdgeHub, EVENTS_QUEUE } from "../../ts/index.js";
import { inheritsNothing } from "../../ts/json.js";
import { creditOf, RawAmqp, tokenFor } from "../helpers/amqp.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, startHub } from "../helpers/hub.js";

/** A hub with device `d1`, and a rhea connection holding its token. */
async function hubWithD1(): Promise<{ hub: EdgeHub; raw: RawAmqp }> {
  const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
  await hub.registry.createDevice({ deviceId: "d1" });
  const raw = await RawAmqp.open(hub);
  expect(await raw.putToken("localhost/devices/d1", tokenFor(hub, "d1"))).toBe(200);
  return { hub, raw };
}

describe("telemetry over AMQP (the rest runs over both heads: test/hub/telemetry.e2e.test.ts, module.e2e.test.ts)", () => {
  it("detaches a link to another device's address with amqp:unauthorized-access, and keeps the client's own", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    for (const deviceId of ["d1", "d2"]) await hub.registry.createDevice({ deviceId });
    const raw = await RawAmqp.open(hub);
    expect(await raw.putToken("localhost/devices/d1", tokenFor(hub, "d1"))).toBe(200);
    const foreign = await raw.sender("/devices/d2/messages/events");
    expect(await foreign.ended).toMatchObject({ condition: "amqp:unauthorized-access" });
    const own = await raw.sender("/devices/d1/messages/events");
    expect(await raw.send(own.sender, { body: "mine" })).toBe("accepted");
    const stored = await hub.store.read(EVENTS_QUEUE);
    expect(stored.map((m) => [m.body.toString(), m.properties["$.cdid"]])).toEqual([["mine", "d1"]]);
  });

  it("refuses links before any token, and a put-token for an audience the token is not for", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    for (const deviceId of ["d1", "d2"]) await hub.registry.createDevice({ deviceId });
    const raw = await RawAmqp.open(hub);
    const early = await raw.sender("/devices/d1/messages/events");
    expect(await early.ended).toMatchObject({ condition: "amqp:unauthorized-access" });
    expect(await raw.putToken("localhost/devices/d2", tokenFor(hub, "d1"))).toBe(401);
    expect(await raw.putToken("localhost/devices/d1", "SharedAccessSignature sr=garbage")).toBe(401);
  });

  it("keeps every application property a client sends as data, `__proto__` included, and drops `$.` keys", async () => {
    const { hub, raw } = await hubWithD1();
    const { sender } = await raw.sender("/devices/d1/messages/events");
    // JSON.parse makes `__proto__` an own key, as a client's encoder sends it.
    const props = JSON.parse('{"__proto__":"p","constructor":"c","n":7,"b":true,"$.cdid":"forged"}');
    expect(await raw.send(sender, { body: "x", application_properties: props, message_id: 42 })).toBe(
      "accepted",
    );
    const [stored] = await hub.store.read(EVENTS_QUEUE);
    expect(inheritsNothing(stored?.properties ?? {})).toBe(true);
    expect({ ...stored?.properties }).toEqual({
      ...JSON.parse('{"__proto__":"p"}'),
      constructor: "c",
      n: "7",
      b: "true",
      "$.mid": "42",
      "$.cdid": "d1",
    });
  });

  it("rejects a message whose application property is not text, and takes the next", async () => {
    const { hub, raw } = await hubWithD1();
    const { sender } = await raw.sender("/devices/d1/messages/events");
    expect(await raw.send(sender, { body: "bad", application_properties: { nested: { a: 1 } } })).toBe(
      "rejected",
    );
    expect(await raw.send(sender, { body: "good" })).toBe("accepted");
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["good"]);
  });

  it("keeps a rejection apart from an acceptance settled in the same turn (rhea would merge them)", async () => {
    const { hub, raw } = await hubWithD1();
    const cbs = await raw.cbs;
    const { sender } = await raw.sender("/devices/d1/messages/events");
    for (let round = 0; round < 5; round++) {
      // One write: a renewal the hub accepts at once, then a message it rejects at once.
      const renewed = raw.sendPutToken(
        cbs as NonNullable<typeof cbs>,
        "localhost/devices/d1",
        tokenFor(hub, "d1"),
      );
      const outcome = raw.send(sender, { body: "bad", application_properties: { nested: { a: 1 } } });
      expect(await outcome).toBe("rejected");
      expect(await renewed).toBe(200);
    }
    expect(await hub.store.read(EVENTS_QUEUE)).toEqual([]);
  });

  it("lets a second connection of an identity take it over: the first one's links are detached", async () => {
    const { hub, raw } = await hubWithD1();
    const first = await raw.sender("/devices/d1/messages/events");
    const second = await RawAmqp.open(hub);
    expect(await second.putToken("localhost/devices/d1", tokenFor(hub, "d1"))).toBe(200);
    expect(await first.ended).toMatchObject({
      condition: "amqp:unauthorized-access",
      description: "taken-over",
    });
    const { sender } = await second.sender("/devices/d1/messages/events");
    expect(await second.send(sender, { body: "from the second" })).toBe("accepted");
    expect(hub.connectedClients).toEqual(["d1"]);
  });

  it("grants a telemetry link 64 credits, one given back per stored message", async () => {
    const { hub, raw } = await hubWithD1();
    const { sender } = await raw.sender("/devices/d1/messages/events");
    await eventually("credit granted", () => creditOf(sender) === 64);
    const outcomes = await Promise.all(
      Array.from({ length: 64 }, (_, i) => raw.send(sender, { body: `m${i}` })),
    );
    expect(outcomes.every((o) => o === "accepted")).toBe(true);
    expect(await hub.store.read(EVENTS_QUEUE, { limit: 100 })).toHaveLength(64);
    await eventually("credit given back", () => creditOf(sender) === 64);
  });

  it("logs in with SASL PLAIN ({device}@sas.{hub} and a SAS token) and refuses a bad password", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    await hub.registry.createDevice({ deviceId: "plain1" });
    const raw = await RawAmqp.open(hub, {
      username: "plain1@sas.localhost",
      password: tokenFor(hub, "plain1"),
    });
    const { sender } = await raw.sender("/devices/plain1/messages/events");
    expect(await raw.send(sender, { body: "by plain" })).toBe("accepted");
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["by plain"]);
    const refused = await RawAmqp.open(hub, {
      username: "plain1@sas.localhost",
      password: "SharedAccessSignature x",
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeDefined();
  });

  it("detaches an identity's links when its token expires, and not when it was renewed in time", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    for (const deviceId of ["short", "renewed"]) await hub.registry.createDevice({ deviceId });
    const raw = await RawAmqp.open(hub);
    expect(await raw.putToken("localhost/devices/short", tokenFor(hub, "short", 2))).toBe(200);
    expect(await raw.putToken("localhost/devices/renewed", tokenFor(hub, "renewed", 2))).toBe(200);
    const short = await raw.sender("/devices/short/messages/events");
    const renewed = await raw.sender("/devices/renewed/messages/events");
    expect(await raw.putToken("localhost/devices/renewed", tokenFor(hub, "renewed", 3600))).toBe(200);
    expect(await short.ended).toMatchObject({
      condition: "amqp:unauthorized-access",
      description: "token-expired",
    });
    // The renewed identity, on the same connection, outlived the first token.
    expect(await raw.send(renewed.sender, { body: "still here" })).toBe("accepted");
    expect(hub.connectedClients).toEqual(["renewed"]);
  });
});
