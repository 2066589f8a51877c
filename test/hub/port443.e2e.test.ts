import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { Client, Message } from "azure-iot-device";
import { AmqpWs } from "azure-iot-device-amqp";
import { MqttWs } from "azure-iot-device-mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeHub, EVENTS_QUEUE, type HubConfigInput, silentLogger } from "../../ts/index.js";
import { childClient, childOf, edgeIdentity, gatewayOf, synced } from "../helpers/edge.js";
import { tempDir } from "../helpers/fixtures.js";
import { startHub, stopHub } from "../helpers/hub.js";
import { moduleFromEnvironment } from "../helpers/module.js";

const run = promisify(execFile);
const child = fileURLToPath(new URL("../fixtures/service-sdk.mjs", import.meta.url));
const c2dChild = fileURLToPath(new URL("../fixtures/service-c2d.mjs", import.meta.url));

// The official SDKs reach the service API, and MQTT and AMQP over WebSocket, on port 443 only:
// every test that needs 443 lives in this file, so they never run at the same time.
let hub: EdgeHub | undefined;
afterEach(async () => {
  await hub?.close();
  hub = undefined;
});

async function startOn443(extra: HubConfigInput = {}): Promise<EdgeHub> {
  hub = await EdgeHub.start(
    {
      hostname: "localhost",
      dataDir: join(await tempDir(), "hub"),
      listen: { host: "127.0.0.1", mqtts: 0, https: 443, amqps: false },
      ...extra,
    },
    silentLogger,
  );
  return hub;
}

describe("the official azure-iothub service SDK", () => {
  it("works against the hub unchanged, trusting its CA through NODE_EXTRA_CA_CERTS", async () => {
    // The service SDK always talks to port 443: this is the only suite that binds it.
    hub = await EdgeHub.start(
      {
        hostname: "localhost",
        dataDir: join(await tempDir(), "hub"),
        listen: { host: "127.0.0.1", mqtts: 0, https: 443, amqps: false },
      },
      silentLogger,
    );
    const { stdout } = await run(process.execPath, [child, hub.serviceConnectionString], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caFile },
    });
    const out = JSON.parse(stdout);
    expect(out.created).toMatchObject({
      deviceId: "sdk-dev",
      status: "enabled",
      authentication: { type: "sas" },
    });
    expect(out.created.authentication.symmetricKey.primaryKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(out.got.generationId).toBe(out.created.generationId);
    expect(out.list).toEqual(["sdk-dev", "sdk-edge"]);
    expect(out.twin.desired.$version).toBe(1);
    expect(out.updated).toMatchObject({ tags: { line: "3" }, properties: { desired: { rate: 5 } } });
    expect(out.query).toEqual(["sdk-dev"]);
    expect(out.notFound).toBe("DeviceNotFoundError");
    expect(out.duplicate).toBe("DeviceAlreadyExistsError");
    // IoT Hub answers 404 DeviceNotOnline, which this SDK surfaces as a plain "Not found" Error.
    expect(out.method).toBe("Error");
    expect(out.afterDelete).toEqual(["sdk-dev"]);
    expect((await hub.twins.get("sdk-dev")).desired.properties).toEqual({ rate: 5 });
  });
});

/** Device `deviceId`, created on `h`, connected with the official SDK's MqttWs (or AmqpWs) transport. */
async function webSocketDevice(
  h: EdgeHub,
  deviceId: string,
  transport: typeof MqttWs | typeof AmqpWs = MqttWs,
): Promise<Client> {
  const dev = await h.registry.createDevice({ deviceId });
  const client = Client.fromConnectionString(
    `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${dev.authentication.symmetricKey?.primaryKey};GatewayHostName=localhost`,
    transport,
  );
  await client.setOptions({ ca: h.caCertificate });
  await client.open();
  return client;
}

describe("the official azure-iothub service client over AMQP", () => {
  it("sends cloud-to-device messages with Client.send (AmqpWs), queued for the device once stored", async () => {
    const h = await startOn443();
    await h.registry.createDevice({ deviceId: "lamp" });
    const { stdout } = await run(process.execPath, [c2dChild, h.serviceConnectionString, "lamp"], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: h.caFile },
    });
    expect(JSON.parse(stdout)).toEqual({ sent: "sent", unknown: "DeviceNotFoundError" });
    const [queued] = await h.store.read("$c2d/lamp");
    expect(queued?.body.toString()).toBe("from the service");
    expect(queued?.properties).toMatchObject({
      k: "v",
      "$.mid": "svc-1",
      "$.to": "/devices/lamp/messages/devicebound",
    });
  });
});

describe.each([
  ["MqttWs", MqttWs],
  ["AmqpWs", AmqpWs],
] as const)("device protocols over WebSocket", (name, transport) => {
  it(`serves the official device SDK's ${name} transport at /$iothub/websocket on the HTTPS listener`, async () => {
    const h = await startOn443();
    const client = await webSocketDevice(h, "ws-dev", transport);
    try {
      const m = new Message("over websocket");
      m.messageId = "ws-1";
      await client.sendEvent(m);
      const twin = await client.getTwin();
      expect(twin.properties.desired.$version).toBe(1);
      const [stored] = await h.store.read(EVENTS_QUEUE);
      expect(stored?.body.toString()).toBe("over websocket");
      expect(stored?.properties).toMatchObject({ "$.mid": "ws-1", "$.cdid": "ws-dev" });
      expect(h.connectedClients).toEqual(["ws-dev"]);
    } finally {
      await client.close();
    }
  });
});

describe("limits over WebSocket", () => {
  it("counts a WebSocket connection toward maxConnections, and frees its address's unauthenticated slot once it is authenticated", async () => {
    const h = await startOn443({ limits: { maxConnections: 2, maxUnauthenticatedPerAddress: 1 } });
    const client = await webSocketDevice(h, "ws-dev");
    const sockets: net.Socket[] = [];
    const tcp = (port: number) =>
      new Promise<"open" | "closed">((resolve) => {
        const s = net.connect({ host: "127.0.0.1", port });
        sockets.push(s);
        s.on("error", () => undefined);
        s.once("close", () => resolve("closed"));
        // Still open a while after connecting: admitted (a refused one is closed at once).
        s.once("connect", () => setTimeout(() => resolve(s.destroyed ? "closed" : "open"), 300));
      });
    try {
      const limits = async () => (await h.status()).limits as { open: number; unauthenticated: number };
      expect(await limits()).toMatchObject({ open: 1, unauthenticated: 0 });
      // The one unauthenticated slot of 127.0.0.1 is free: a silent socket takes it.
      expect(await tcp(h.ports.https)).toBe("open");
      // Two sockets open (the WebSocket's and the silent one): the cap refuses a third.
      expect(await tcp(h.ports.mqtts)).toBe("closed");
      expect((await h.status()).limits).toMatchObject({
        open: 2,
        unauthenticated: 1,
        refused: { maxConnections: 1, perAddress: 0 },
      });
      await client.sendEvent(new Message("still served"));
      const [stored] = await h.store.read(EVENTS_QUEUE);
      expect(stored?.body.toString()).toBe("still served");
    } finally {
      for (const s of sockets) s.destroy();
      await client.close();
    }
  });
});

describe("direct methods between a hub's own clients", () => {
  it("a module invokes a method on a child of its edge device through the edge, with the parent away; other targets are refused", async () => {
    const root = await startHub(join(await tempDir(), "root"));
    const parent = await edgeIdentity(root, "edge1");
    const caller = await root.registry.createModule({ deviceId: "edge1", moduleId: "caller" });
    const key = await childOf(root, "edge1", "sensor");
    await root.registry.createDevice({ deviceId: "stranger" });
    hub = await EdgeHub.start(
      {
        hostname: "127.0.0.1",
        dataDir: join(await tempDir(), "edge"),
        listen: { host: "127.0.0.1", mqtts: 0, https: 443, amqps: false },
        parent,
      },
      silentLogger,
    );
    const edge = hub;
    await synced(edge);
    const sensor = await childClient(gatewayOf(edge), "sensor", key);
    sensor.onDeviceMethod("reboot", (req, res) => res.send(200, { rebooted: req.payload }, () => undefined));
    await sensor.open();
    await stopHub(root);

    const caFile = join(await tempDir(), "edge-ca.pem");
    await writeFile(caFile, edge.caCertificate);
    // invokeMethod goes over HTTPS to GatewayHostName:443; the module needs no MQTT for it.
    const mod = await moduleFromEnvironment(
      `HostName=localhost;DeviceId=edge1;ModuleId=caller;SharedAccessKey=${caller.authentication.symmetricKey?.primaryKey};GatewayHostName=127.0.0.1`,
      caFile,
    );
    const result = await mod.invokeMethod("sensor", {
      methodName: "reboot",
      payload: "now",
      responseTimeoutInSeconds: 5,
      connectTimeoutInSeconds: 5,
    });
    expect(result).toEqual({ status: 200, payload: { rebooted: "now" } });
    const refused = await mod
      .invokeMethod("stranger", {
        methodName: "reboot",
        payload: null,
        responseTimeoutInSeconds: 5,
        connectTimeoutInSeconds: 5,
      })
      .then(
        () => undefined,
        (err: Error & { response?: { statusCode?: number } }) => err.response?.statusCode ?? err.message,
      );
    expect(refused).toBe(403);
  });
});
