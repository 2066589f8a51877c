/**
 * The site the upstream conformance suite drives (test/upstream/conformance.e2e.test.ts):
 * strict recording parents standing in for Azure IoT Hub `myhub.azure-devices.net` (MQTT:
 * {@link RawParent}; HTTPS, the module identity read and the device scope: {@link RawHttpsParent}),
 * a real edge hub `edge1` under them, a real edge hub `edge2` under `edge1`, and official
 * azure-iot-device clients: leaf devices `leaf1` (edge1), `leaf2` (edge2), module `edge1/mod1`
 * and `edge2/mod2`, and `leaf3`, whose logins the parent refuses. The ids and hub name are the
 * fixtures' (test/fixtures/upstream-forms), so what edgehub sends compares to their examples
 * literally. {@link driveSite} exercises every form and returns what was captured.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { Client, Message, ModuleClient, type Twin } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import type { Packet } from "mqtt-packet";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub, StoredMessage } from "../../ts/index.js";
import { moduleJson } from "../../ts/service/shapes.js";
import { ScopeIdentity } from "../../ts/upstream/scope-identity.js";
import { startEdge, synced } from "./edge.js";
import { eventually, tempDir } from "./fixtures.js";
import { recordingLogger } from "./hub.js";
import { RawHttpsParent } from "./raw-https-parent.js";
import { RawParent } from "./raw-parent.js";
import { device, edgeDevice, edgeOf, json, KEY } from "./scope-edge.js";
import { call } from "./service.js";

/** The fixtures' hub. */
export const HUB = "myhub.azure-devices.net";

/** The telemetry bodies the clients send, by who sends them (each goes up once). */
export const BODIES = {
  bag: "leaf1-bag",
  sys: "leaf1-sys",
  exp: "leaf1-exp",
  modPlain: "mod1-plain",
  modOut: "mod1-out",
  leaf2: "leaf2-msg",
  mod2: "mod2-msg",
  refused: "leaf3-msg",
} as const;

/** What the clients observed, besides the parents' records. */
export interface Observed {
  /** leaf1's desired properties after the parent's desired patch. */
  desired: Record<string, unknown> | undefined;
  /** The method call leaf1's handler got. */
  method: { name: string; payload: unknown } | undefined;
  /** C2D messages leaf1 got (message id, body), and whether its PUBACK had reached the parent before. */
  c2d: Array<{ messageId: string; body: string; ackedBefore: boolean }>;
  /** Bodies in edge1's dead-letter queue. */
  deadLettered: string[];
  /** Client ids edge1 holds after its scope sync (devices, then `d/m` modules). */
  scopeIds: string[];
  /** The legacy (GET) scope sync's result. */
  legacySync: boolean;
  /** leaf4, unknown to edge1 until asked for alone: got in on its second login. */
  leaf4In: boolean;
  /** The legacy single read's result (leaf1, from the parent without the nested routes). */
  legacyOne: boolean;
  /** edge2's identity service through edge1: statuses of its PUT, PUT with If-Match, list, DELETE; the listed ids. */
  moduleWrites: { statuses: number[]; listed: string[] };
}

export interface Captured {
  mqtt: RawParent;
  https: RawHttpsParent;
  /** A parent without the nested scope route (404), which edge1's scope sync asked the legacy way. */
  legacy: RawHttpsParent;
  observed: Observed;
}

const scopeOf = (edgeId: string) => `ms-azure-iot-edge://${edgeId}-638000000000000000`;
const leaf = (id: string, edgeId: string) =>
  device(id, { deviceScope: scopeOf(edgeId), parentScopes: [scopeOf(edgeId)] });
const mod = (deviceId: string, moduleId: string, key: string) =>
  moduleJson(
    {
      deviceId,
      moduleId,
      generationId: "638000000000000001",
      etag: "AAAAAAAAAAE=",
      authentication: { type: "sas", symmetricKey: { primaryKey: key, secondaryKey: key } },
    },
    false,
  );

/**
 * The scope IoT Hub would give: edge1's first page (itself, leaf1, leaf3, its modules) with
 * a continuation, whose page names edge2; edge2's target scope (itself, leaf2, its modules).
 * The very first call is answered 429 (retried as Microsoft's client retries it). The legacy
 * GET gets the same records in two pages.
 */
function answerScope(https: RawHttpsParent, edge2HubKey: string): void {
  const edge1Page = {
    devices: [edgeDevice("edge1"), leaf("leaf1", "edge1"), leaf("leaf3", "edge1")],
    modules: [mod("edge1", "$edgeHub", https.key), mod("edge1", "mod1", KEY)],
  };
  const edge2Page = {
    devices: [edgeDevice("edge2", "edge1"), leaf("leaf2", "edge2")],
    modules: [mod("edge2", "$edgeHub", edge2HubKey), mod("edge2", "mod2", KEY)],
  };
  const legacyNext = `/devices/edge1/modules/$edgeHub/devicesAndModulesInDeviceScope?deviceCount=500&continuationToken=page-2&api-version=2018-08-30-preview`;
  https.answer = (n, call, res: ServerResponse) => {
    if (n === 0) {
      res.writeHead(429).end();
      return;
    }
    if (call.method === "GET") {
      if (call.url.includes("continuationToken=page-2"))
        json(res, {
          devices: [edgeDevice("edge2", "edge1"), ...edge2Page.devices.slice(1)],
          modules: edge2Page.modules,
          continuationLink: null,
        });
      else json(res, { ...edge1Page, continuationLink: legacyNext });
      return;
    }
    const chain = call.body?.authChain;
    if (chain === "edge1" && call.body?.continuationLink === undefined)
      json(res, { ...edge1Page, continuationLink: "page-2" });
    else if (chain === "edge1")
      json(res, { devices: [edgeDevice("edge2", "edge1")], modules: [], continuationLink: null });
    else if (chain === "edge2;edge1") json(res, { ...edge2Page, continuationLink: null });
    else res.writeHead(404).end();
  };
}

/** Answers twin requests as IoT Hub does (`$iothub/twin/res/{status}/?$rid=…`). */
function answerTwins(mqtt: RawParent): void {
  mqtt.onPublish = (p, reply) => {
    const rid = /\?\$rid=([^&]*)/.exec(p.topic)?.[1];
    const answer = (status: number, query: string, body: string) =>
      reply({
        cmd: "publish",
        topic: `$iothub/twin/res/${status}/?$rid=${rid}${query}`,
        payload: Buffer.from(body),
        qos: 0,
        dup: false,
        retain: false,
      } as Packet);
    if (p.topic.startsWith("$iothub/twin/GET/"))
      answer(200, "", JSON.stringify({ desired: { $version: 1 }, reported: { $version: 1 } }));
    else if (p.topic.startsWith("$iothub/twin/PATCH/properties/reported/")) answer(204, "&$version=2", "");
    return "puback";
  };
}

const clients: Array<Client | ModuleClient> = [];

async function deviceOf(edge: EdgeHub, id: string): Promise<Client> {
  const cs = `HostName=${HUB};DeviceId=${id};SharedAccessKey=${KEY};GatewayHostName=127.0.0.1:${edge.ports.mqtts}`;
  const c = Client.fromConnectionString(cs, Mqtt);
  await c.setOptions({ ca: edge.caCertificate });
  clients.push(c);
  await c.open();
  return c;
}

async function moduleOf(edge: EdgeHub, deviceId: string, moduleId: string): Promise<ModuleClient> {
  const cs = `HostName=${HUB};DeviceId=${deviceId};ModuleId=${moduleId};SharedAccessKey=${KEY};GatewayHostName=127.0.0.1:${edge.ports.mqtts}`;
  const c = ModuleClient.fromConnectionString(cs, Mqtt);
  await c.setOptions({ ca: edge.caCertificate });
  clients.push(c);
  await c.open();
  return c;
}

/** A message's system properties as the SDK sets them, and its application properties. */
type MessageFields = Partial<
  Pick<Message, "messageId" | "correlationId" | "contentType" | "contentEncoding" | "expiryTimeUtc">
> & { app?: Record<string, string> };

const msg = (body: string, { app = {}, ...system }: MessageFields = {}) => {
  const m = Object.assign(new Message(body), system);
  for (const [k, v] of Object.entries(app)) m.properties.add(k, v);
  return m;
};

const subscribed = (mqtt: RawParent, clientId: string, filter: string) =>
  mqtt.received.some((r) => r.cmd === "subscribe" && r.clientId === clientId && r.topics.includes(filter));
const unsubscribed = (mqtt: RawParent, clientId: string, filter: string) =>
  mqtt.received.some((r) => r.cmd === "unsubscribe" && r.clientId === clientId && r.topics.includes(filter));
const pubacked = (mqtt: RawParent, clientId: string, id: number) =>
  mqtt.received.some((r) => r.cmd === "puback" && r.clientId === clientId && r.messageId === id);

/** Builds the site, drives every form through it, and returns what the parents recorded. */
export async function driveSite(): Promise<Captured> {
  const certs = await tempDir();
  // One CA for both parents: the edge trusts one parent CA file.
  const https = await RawHttpsParent.start("edge1", { hubHostname: HUB, certDir: join(certs, "certs") });
  const mqtt = await RawParent.start({ hubDir: certs });
  https.deviceKey = randomBytes(32).toString("base64");
  const edge2HubKey = randomBytes(32).toString("base64");
  answerScope(https, edge2HubKey);
  answerTwins(mqtt);
  // leaf2's first two logins meet a busy parent (CONNACK 3); leaf3's are never let in
  // (CONNACK 2); edge2's first gets no CONNACK at all.
  let busy = 0;
  let silent = 0;
  mqtt.connack = (id) => {
    if (id === "leaf3") return 2;
    if (id === "leaf2" && busy++ < 2) return 3;
    return id === "edge2" && silent++ === 0 ? -1 : 0;
  };
  const caFile = join(certs, "parent-ca.pem");
  await writeFile(caFile, mqtt.ca);
  const observed: Observed = {
    desired: undefined,
    method: undefined,
    c2d: [],
    deadLettered: [],
    scopeIds: [],
    legacySync: false,
    leaf4In: false,
    legacyOne: false,
    moduleWrites: { statuses: [], listed: [] },
  };
  try {
    const edge1 = await startEdge(await tempDir(), {
      hostname: "localhost",
      hubHostname: HUB,
      port: mqtt.port,
      httpsPort: https.port,
      deviceId: "edge1",
      sharedAccessKey: https.deviceKey,
      caFile,
      maxBackoffMs: 300,
    });
    await synced(edge1);
    const edge2 = await startEdge(await tempDir(), {
      hostname: "127.0.0.1",
      hubHostname: HUB,
      port: edge1.ports.mqtts,
      httpsPort: edge1.ports.https,
      deviceId: "edge2",
      sharedAccessKey: KEY,
      caFile: edge1.caFile,
      maxBackoffMs: 300,
    });
    await synced(edge2);
    observed.scopeIds = [
      ...edge1.registry.listDevices().map((d) => d.deviceId),
      ...edge1.registry
        .listDevices()
        .flatMap((d) => edge1.registry.listModules(d.deviceId).map((m) => `${d.deviceId}/${m.moduleId}`)),
    ].sort();

    // Telemetry of every kind of sender, and links for the child edge and its $edgeHub.
    const leaf1 = await deviceOf(edge1, "leaf1");
    const mod1 = await moduleOf(edge1, "edge1", "mod1");
    const asJson = { contentType: "application/json", contentEncoding: "utf-8" } as const;
    await leaf1.sendEvent(msg(BODIES.bag, { messageId: "m-1", ...asJson, app: { temp: "21" } }));
    await leaf1.sendEvent(
      msg(BODIES.sys, { messageId: "m-2", correlationId: "c-2", ...asJson, app: { color: "red" } }),
    );
    await leaf1.sendEvent(msg(BODIES.exp, { expiryTimeUtc: new Date(Date.now() + 3_600_000).toISOString() }));
    await mod1.sendEvent(msg(BODIES.modPlain));
    await mod1.sendOutputEvent("out1", msg(BODIES.modOut));
    await (await deviceOf(edge2, "leaf2")).sendEvent(msg(BODIES.leaf2));
    await (await moduleOf(edge2, "edge2", "mod2")).sendEvent(msg(BODIES.mod2));
    const leaf3 = await deviceOf(edge1, "leaf3");
    await leaf3.sendEvent(msg(BODIES.refused));
    for (const id of ["edge2", "edge2/$edgeHub"]) edge1.upstream?.methodRelay?.listen(id);

    // Twin: a GET and a reported patch through the edge, then a desired patch from the parent.
    const twin: Twin = await leaf1.getTwin();
    await new Promise<void>((resolve, reject) =>
      twin.properties.reported.update({ firmware: "1.0" }, (err?: Error) => (err ? reject(err) : resolve())),
    );
    twin.on("properties.desired", (d: Record<string, unknown>) => {
      if (d.$version === 7) observed.desired = d;
    });
    await eventually("leaf1's desired subscription upstream", () =>
      subscribed(mqtt, "leaf1", "$iothub/twin/PATCH/properties/desired/#@0"),
    );
    mqtt.sendTo("leaf1", {
      cmd: "publish",
      topic: "$iothub/twin/PATCH/properties/desired/?$version=7",
      payload: Buffer.from(JSON.stringify({ interval: 30, $version: 7 })),
      qos: 0,
      dup: false,
      retain: false,
    } as Packet);
    await eventually("the desired patch at leaf1", () => observed.desired !== undefined);

    // A direct method call to leaf1 and its answer.
    leaf1.onDeviceMethod("reboot", (req, res) => {
      observed.method = { name: req.methodName, payload: req.payload };
      res.send(200, { done: true }, () => undefined);
    });
    await eventually("leaf1's method subscription upstream", () =>
      subscribed(mqtt, "leaf1", "$iothub/methods/POST/#@0"),
    );
    mqtt.sendTo("leaf1", {
      cmd: "publish",
      topic: "$iothub/methods/POST/reboot/?$rid=1",
      payload: Buffer.from(JSON.stringify({ delay: 0 })),
      qos: 0,
      dup: false,
      retain: false,
    } as Packet);
    await eventually("the method's answer", () =>
      mqtt.publishes.some((p) => p.clientId === "leaf1" && p.topic.startsWith("$iothub/methods/res/")),
    );

    // C2D: one the edge refuses (a bag over its limit), one delivered and completed.
    leaf1.on("message", (m: Message) => {
      observed.c2d.push({
        messageId: String(m.messageId),
        body: m.data.toString(),
        ackedBefore: pubacked(mqtt, "leaf1", 7),
      });
      leaf1.complete(m, () => undefined);
    });
    await eventually("leaf1's C2D subscription upstream", () =>
      subscribed(mqtt, "leaf1", "devices/leaf1/messages/devicebound/#@1"),
    );
    const c2d = (messageId: number, bag: string, body: string) =>
      ({
        cmd: "publish",
        topic: `devices/leaf1/messages/devicebound/${bag}`,
        payload: Buffer.from(body),
        qos: 1,
        messageId,
        dup: false,
        retain: false,
      }) as Packet;
    mqtt.sendTo("leaf1", c2d(8, `big=${"x".repeat(20_000)}`, "refused-c2d"));
    mqtt.sendTo(
      "leaf1",
      c2d(7, "%24.mid=c2d-1&%24.to=%2Fdevices%2Fleaf1%2Fmessages%2Fdevicebound", "hello leaf1"),
    );
    await eventually(
      "both C2D messages completed upstream",
      () => pubacked(mqtt, "leaf1", 7) && pubacked(mqtt, "leaf1", 8),
    );

    // Every message up, leaf3's dead-lettered after its refusals.
    const up = (body: string) => mqtt.publishes.some((p) => p.payload.toString() === body);
    await eventually("every accepted sender's telemetry upstream", () =>
      Object.values(BODIES).every((b) => b === BODIES.refused || up(b)),
    );
    const dead = async () =>
      (await edge1.store.read("$deadletter", { from: 0 })).map((m: StoredMessage) => m.body.toString());
    await eventually("leaf3's message dead-lettered", async () => (await dead()).includes(BODIES.refused));
    observed.deadLettered = await dead();

    // The legacy scope call: edge1's scope sync against a parent without the nested route
    // (a parent that answered the POST once is asked it for good).
    const legacy = await RawHttpsParent.start("edge1", { hubHostname: HUB, certDir: join(certs, "certs") });
    legacy.deviceKey = https.deviceKey;
    legacy.nestedRoute = 404;
    answerScope(legacy, edge2HubKey);
    const legacyEdge = await edgeOf({
      hostname: "localhost",
      hubHostname: HUB,
      httpsPort: legacy.port,
      deviceId: "edge1",
      sharedAccessKey: https.deviceKey,
      caFile,
    });
    observed.legacySync = await legacyEdge.sync.sync();

    // The legacy single read, from the same parent (its POST route 404 as well).
    legacy.identityAnswer = (req, res) =>
      req.method === "POST"
        ? res.writeHead(404).end()
        : json(res, { devices: [leaf("leaf1", "edge1")], modules: [], continuationLink: null });
    const one = new ScopeIdentity(
      legacyEdge.config,
      legacyEdge.credentials,
      legacyEdge.registry,
      legacyEdge.sync,
      recordingLogger(),
    );
    observed.legacyOne = await one.fetch("leaf1", undefined);

    // One identity on behalf of: leaf4, made after edge1's sync, logs in; edge1 asks for it alone.
    https.identityAnswer = (_req, res) =>
      json(res, { devices: [leaf("leaf4", "edge1")], modules: [], continuationLink: null });
    await deviceOf(edge1, "leaf4").catch(() => undefined);
    await eventually("leaf4 fetched alone", () => edge1.registry.getDevice("leaf4") !== undefined);
    observed.leaf4In = await deviceOf(edge1, "leaf4").then(
      () => true,
      () => false,
    );

    // edge2's identity service (its local gateway: edge1) creates, updates, lists and deletes
    // a module of its own with edge2's device token; edge1 forwards the writes upstream.
    https.moduleWriteAnswer = (req, res) =>
      req.method === "DELETE" ? res.writeHead(204).end() : json(res, mod("edge2", "mod3", KEY));
    const edge2Token = createSasToken(`${HUB}/devices/edge2`, KEY, Math.floor(Date.now() / 1000) + 600);
    const asEdge2 = (method: string, path: string, body?: unknown, ifMatch?: string) =>
      call(edge1, method, `${path}?api-version=2017-11-08-preview`, body, {
        authorization: edge2Token,
        ...(ifMatch ? { "if-match": ifMatch } : {}),
      });
    const spec = {
      moduleId: "mod3",
      managedBy: "iotEdge",
      deviceId: "edge2",
      authentication: { type: "sas" },
    };
    const writes = [
      await asEdge2("PUT", "/devices/edge2/modules/mod3", spec),
      await asEdge2("PUT", "/devices/edge2/modules/mod3", spec, "*"),
      await asEdge2("GET", "/devices/edge2/modules"),
      await asEdge2("DELETE", "/devices/edge2/modules/mod3", undefined, "*"),
    ];
    observed.moduleWrites = {
      statuses: writes.map((w) => w.status),
      listed: ((writes[2]?.body ?? []) as { moduleId: string }[]).map((m) => m.moduleId).sort(),
    };

    // edge2's first login, never answered, given up (then retried).
    await eventually("edge2's unanswered login closed and retried", () => {
      const tries = mqtt.connects.filter((c) => c.clientId === "edge2");
      return tries[0]?.closedAt !== undefined && tries.length >= 2;
    });

    // leaf1 goes: its method and C2D subscriptions are dropped upstream.
    await leaf1.close();
    await eventually("leaf1's subscriptions dropped", () =>
      ["$iothub/methods/POST/#", "devices/leaf1/messages/devicebound/#"].every((f) =>
        unsubscribed(mqtt, "leaf1", f),
      ),
    );
    return { mqtt, https, legacy, observed };
  } finally {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  }
}
