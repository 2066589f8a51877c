import { readFile, writeFile } from "node:fs/promises";
import https from "node:https";
import { join } from "node:path";
import tls from "node:tls";
import type { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedDevice, startHub, stopHub } from "../helpers/hub.js";
import { call, type Reply, serviceToken } from "../helpers/service.js";

describe("service API (IoT Hub's REST paths over HTTPS)", () => {
  it("requires an iothubowner token signed with the hub's policy key", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    expect((await call(hub, "GET", "/devices", undefined, { authorization: "" })).status).toBe(401);
    const forged = serviceToken(hub, Buffer.alloc(32, 7).toString("base64"));
    const r = await call(hub, "GET", "/devices", undefined, { authorization: forged });
    expect(r.status).toBe(401);
    expect((r.body as { Message: string }).Message).toMatch(/^ErrorCode:IotHubUnauthorizedAccess;/);
    expect((await call(hub, "GET", "/devices")).status).toBe(200);
  });

  it("answers every refused caller with one generic 401 and logs why, with the code", async () => {
    const logged: Array<Record<string, unknown>> = [];
    const log = {
      log: (_l: string, event: string, f: Record<string, unknown> = {}) => logged.push({ event, ...f }),
    };
    const hub = await startHub(join(await tempDir(), "hub"), {}, log);
    const edge = await hub.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    await hub.registry.createModule({ deviceId: "edge1", moduleId: "caller" });
    const wrongKey = Buffer.alloc(32, 9).toString("base64");
    const soon = Math.floor(Date.now() / 1000) + 600;
    const as = (resource: string, moduleId?: string) => ({
      authorization: createSasToken(`localhost/${resource}`, wrongKey, soon),
      ...(moduleId ? { "x-ms-edge-moduleid": moduleId } : {}),
    });
    const scope = (id: string) => `/devices/${id}/modules/$edgeHub/devicesAndModulesInDeviceScope`;
    const refusals = [
      // A module call: an unknown module, then a known one with a bad signature.
      await call(
        hub,
        "POST",
        "/twins/edge1/methods",
        { methodName: "x" },
        as("devices/ghost/modules/m", "ghost/m"),
      ),
      await call(
        hub,
        "POST",
        "/twins/edge1/methods",
        { methodName: "x" },
        as("devices/edge1/modules/caller", "edge1/caller"),
      ),
      // The scope call: an unknown edge, then a known one with a bad signature.
      await call(hub, "GET", scope("ghost"), undefined, as("devices/ghost")),
      await call(hub, "GET", scope("edge1"), undefined, as("devices/edge1")),
      // The service policy: a forged token, and none at all.
      await call(hub, "GET", "/devices", undefined, { authorization: serviceToken(hub, wrongKey) }),
      await call(hub, "GET", "/devices", undefined, { authorization: "" }),
    ];
    for (const r of refusals) {
      expect(r.status).toBe(401);
      expect((r.body as { Message: string }).Message).toBe("ErrorCode:IotHubUnauthorizedAccess;Unauthorized");
    }
    const reasons = logged.filter((e) => e.event === "service-api-refused").map((e) => String(e.reason));
    expect(reasons).toHaveLength(refusals.length);
    expect(reasons.filter((r) => r.startsWith("AUTH_UNKNOWN_IDENTITY")).length).toBe(2);
    expect(reasons.filter((r) => r.startsWith("AUTH_BAD_SIGNATURE")).length).toBe(2);
    expect(edge.deviceScope).toBeDefined();
  });

  it("manages devices, modules and parent/child scopes, and answers queries", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const created = await call(hub, "PUT", "/devices/sensor-1", { deviceId: "sensor-1" });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({
      deviceId: "sensor-1",
      status: "enabled",
      authentication: { type: "sas" },
    });
    const edge = (
      await call(hub, "PUT", "/devices/edge1", { deviceId: "edge1", capabilities: { iotEdge: true } })
    ).body as {
      deviceScope: string;
    };
    expect(edge.deviceScope).toMatch(/^ms-azure-iot-edge:\/\/edge1-\d+$/);
    // Replacing needs If-Match; a stale etag loses (412), the current one or * wins.
    const etag = (created.body as { etag: string }).etag;
    expect((await call(hub, "PUT", "/devices/sensor-1", { deviceId: "sensor-1" })).status).toBe(409);
    const disable = { deviceId: "sensor-1", status: "disabled" };
    expect((await call(hub, "PUT", "/devices/sensor-1", disable, { "if-match": '"stale"' })).status).toBe(
      412,
    );
    const replaced = await call(hub, "PUT", "/devices/sensor-1", disable, { "if-match": `"${etag}"` });
    expect(replaced.body).toMatchObject({ status: "disabled" });
    expect((await call(hub, "PUT", "/devices/sensor-1", disable, { "if-match": `"${etag}"` })).status).toBe(
      412,
    );
    expect(
      (await call(hub, "PUT", "/devices/sensor-1", { deviceId: "sensor-1" }, { "if-match": "*" })).status,
    ).toBe(200);
    await call(hub, "PUT", "/devices/leaf", { deviceId: "leaf", deviceScope: edge.deviceScope });
    expect((await call(hub, "GET", "/devices/leaf")).body).toMatchObject({
      parentScopes: [edge.deviceScope],
    });
    expect((await call(hub, "PUT", "/devices/edge1/modules/filter", {})).status).toBe(200);
    // An edge device comes with $edgeAgent and $edgeHub, as on IoT Hub.
    const modules = (await call(hub, "GET", "/devices/edge1/modules")).body as { moduleId: string }[];
    expect(modules.map((m) => m.moduleId).sort()).toEqual(["$edgeAgent", "$edgeHub", "filter"]);
    expect((await call(hub, "GET", "/devices/nope")).status).toBe(404);
    expect((await call(hub, "PUT", "/devices/edge1/modules/filter", {})).status).toBe(409);
    const leaves = (
      await call(hub, "POST", "/devices/query", {
        query: "SELECT * FROM devices WHERE capabilities.iotEdge = false",
      })
    ).body as Array<{ deviceId: string }>;
    expect(leaves.map((d) => d.deviceId).sort()).toEqual(["leaf", "sensor-1"]);
    expect((await call(hub, "POST", "/devices/query", { query: "DROP TABLE devices" })).status).toBe(400);
    expect((await call(hub, "DELETE", "/devices/edge1")).status).toBe(204);
    expect(hub.registry.getModule("edge1", "filter")).toBeUndefined();
  });

  it("updates twins, invokes methods, sends C2D and reads telemetry, end to end with a real device", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const client = await connectedDevice(hub, "dev");
    const twin = await client.getTwin();
    const desired = new Promise<unknown>((resolve) =>
      twin.on("properties.desired", (p: { mode?: string }) => p.mode && resolve(p)),
    );
    const patched = await call(hub, "PATCH", "/twins/dev", {
      tags: { site: "plant-7" },
      properties: { desired: { mode: "eco" } },
    });
    expect(patched.body).toMatchObject({
      tags: { site: "plant-7" },
      properties: { desired: { mode: "eco", $version: 2 } },
    });
    expect(await desired).toMatchObject({ mode: "eco", $version: 2 });

    client.onDeviceMethod("blink", (req, res) => res.send(200, { times: req.payload }, () => undefined));
    let answer: Reply = { status: 0, body: null };
    await eventually("device listens for methods", async () => {
      answer = await call(hub, "POST", "/twins/dev/methods", {
        methodName: "blink",
        payload: 3,
        responseTimeoutInSeconds: 5,
      });
      return answer.status !== 404;
    });
    expect(answer).toEqual({ status: 200, body: { status: 200, payload: { times: 3 } } });
    expect((await call(hub, "POST", "/twins/ghost/methods", { methodName: "x" })).status).toBe(404);

    const got: Message[] = [];
    client.on("message", (m: Message) => {
      got.push(m);
      client.complete(m, () => undefined);
    });
    const sent = await call(hub, "POST", "/devices/dev/messages/deviceBound", Buffer.from("open valve"), {
      "iothub-messageid": "c2d-1",
      "iothub-app-valve": "3",
    });
    expect(sent.status).toBe(204);
    await eventually("C2D delivered", () => got.length === 1);
    expect(got[0]?.data.toString()).toBe("open valve");
    expect(got[0]?.messageId).toBe("c2d-1");
    expect(got[0]?.properties.getValue("valve")).toBe("3");

    const { Message: DeviceMessage } = await import("azure-iot-device");
    const m = new DeviceMessage("21.5");
    m.properties.add("unit", "C");
    m.messageId = "t-1";
    await client.sendEvent(m);
    const events = (await call(hub, "GET", "/messages/events?from=0&limit=10")).body as {
      messages: Array<Record<string, unknown>>;
      next: number;
    };
    expect(events.next).toBe(1);
    expect(events.messages[0]).toMatchObject({
      offset: 0,
      deviceId: "dev",
      properties: { unit: "C" },
      systemProperties: { messageId: "t-1", connectionDeviceId: "dev" },
      body: Buffer.from("21.5").toString("base64"),
    });
  });
});

describe("the TLS chain the hub serves", () => {
  /** Subjects of the certificates the hub sent, as a client trusting nothing sees them. */
  async function servedSubjects(hub: EdgeHub): Promise<string[]> {
    const socket = tls.connect({
      host: "127.0.0.1",
      port: hub.ports.mqtts,
      servername: "localhost",
      rejectUnauthorized: false,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", () => resolve());
      socket.once("error", reject);
    });
    const subjects: string[] = [];
    const seen = new Set<string>();
    for (
      let c: tls.DetailedPeerCertificate | undefined = socket.getPeerCertificate(true);
      c?.raw;
      c = c.issuerCertificate
    ) {
      if (seen.has(c.fingerprint256)) break;
      seen.add(c.fingerprint256);
      subjects.push(String(c.subject.CN));
    }
    socket.destroy();
    return subjects;
  }

  it("is the server certificate without the self-signed root, as IoT Hub serves it, also from older data", async () => {
    const dataDir = join(await tempDir(), "hub");
    const hub = await startHub(dataDir);
    expect(await servedSubjects(hub)).toEqual(["localhost"]);
    await stopHub(hub);
    // A server.pem written by an older version carries the root: it is left out when served.
    const server = join(dataDir, "certs", "server.pem");
    await writeFile(server, `${await readFile(server, "utf8")}${hub.caCertificate}`);
    const again = await startHub(dataDir);
    expect(await servedSubjects(again)).toEqual(["localhost"]);
    // Clients trusting the CA still verify the hub.
    await connectedDevice(again, "still-trusted");
  });
});

describe("events stream", () => {
  it("replays stored telemetry, then streams new messages as newline-delimited JSON while open", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    const client = await connectedDevice(hub, "s1");
    const { Message: DeviceMessage } = await import("azure-iot-device");
    await client.sendEvent(new DeviceMessage("before"));
    const lines: Array<{ offset: number; body: string }> = [];
    const req = https.get({
      host: "localhost",
      port: hub.ports.https,
      path: "/messages/events/stream?from=0&api-version=2021-04-12",
      ca: hub.caCertificate,
      headers: { authorization: serviceToken(hub) },
    });
    req.on("response", (res) => {
      expect(res.statusCode).toBe(200);
      let buf = "";
      res.on("data", (d: Buffer) => {
        buf += d.toString();
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          lines.push(JSON.parse(buf.slice(0, nl)));
          buf = buf.slice(nl + 1);
        }
      });
    });
    req.on("error", () => undefined);
    await eventually("replayed message", () => lines.length === 1);
    await client.sendEvent(new DeviceMessage("after"));
    await eventually("streamed message", () => lines.length === 2);
    expect(lines.map((l) => Buffer.from(l.body, "base64").toString())).toEqual(["before", "after"]);
    expect(lines.map((l) => l.offset)).toEqual([0, 1]);
    req.destroy();
  });
});

describe("deleting an identity", () => {
  it("leaves nothing a new identity with the same id would inherit", async () => {
    const hub = await startHub(join(await tempDir(), "hub"));
    await call(hub, "PUT", "/devices/reused", { deviceId: "reused" });
    await call(hub, "PATCH", "/twins/reused", { properties: { desired: { secret: 1 } } });
    await call(hub, "POST", "/devices/reused/messages/deviceBound", Buffer.from("for the old one"));
    expect((await call(hub, "DELETE", "/devices/reused")).status).toBe(204);
    await call(hub, "PUT", "/devices/reused", { deviceId: "reused" });
    const twin = (await call(hub, "GET", "/twins/reused")).body as {
      properties: { desired: Record<string, unknown> };
    };
    expect(twin.properties.desired).toEqual({ $metadata: {}, $version: 1 });
    expect(await hub.store.read("$c2d/reused")).toEqual([]);
  });
});
