/**
 * The operators' listener of a real hub: a Prometheus scrape after real MQTT traffic from
 * the official SDK (linted by Prometheus' promtool), /healthz and /readyz (503 once the store is closed), the status page's
 * JSON, the Host check, and the `metrics` config key.
 */
import { spawnSync } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../ts/config/config.js";
import { EdgeHub, silentLogger } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { connectedDevice, deviceClient, recordingLogger, startHub } from "../helpers/hub.js";
import { localGet } from "../helpers/local-http.js";
import { call, callAsModule, serviceToken } from "../helpers/service.js";

/** The value of the sample `name{labels}` in a text exposition (undefined when absent). */
function sample(text: string, name: string, labels = ""): number | undefined {
  const key = labels ? `${name}{${labels}}` : name;
  const line = text.split("\n").find((l) => l.startsWith(`${key} `));
  return line === undefined ? undefined : Number(line.slice(key.length + 1));
}

describe("metrics listener", () => {
  it("counts real MQTT traffic, clients, commits and refused logins in /metrics", async () => {
    const hub = await startHub(await tempDir(), { metrics: { port: 0 } });
    const port = hub.ports.metrics;
    expect(port).toBeGreaterThan(0);
    const device = await connectedDevice(hub, "sensor-1");
    for (let i = 0; i < 7; i++) await device.sendEvent(new Message(`{"n":${i}}`));
    // A login with a wrong key: refused, counted by its code.
    const impostor = await deviceClient(hub, "sensor-1", Buffer.alloc(32, 7).toString("base64"));
    await expect(impostor.open()).rejects.toThrow();

    const m = await localGet(port, "/metrics");
    expect(m.status).toBe(200);
    expect(m.type).toContain("text/plain");
    // Prometheus' own linter (Debian's promtool) reads the exposition: format and naming.
    const lint = spawnSync("promtool", ["check", "metrics"], { input: m.body, encoding: "utf8" });
    expect(lint.error).toBeUndefined();
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe("");
    expect(lint.status).toBe(0);
    expect(sample(m.body, "edgehub_messages_in_total", 'endpoint="$events"')).toBe(7);
    expect(sample(m.body, "edgehub_backlog_messages", 'endpoint="$events"')).toBe(7);
    expect(sample(m.body, "edgehub_connected_clients")).toBe(1);
    expect(sample(m.body, "edgehub_auth_failures_total", 'transport="mqtt",code="AUTH_BAD_SIGNATURE"')).toBe(
      1,
    );
    // One commit per append call: at least one, at most one per message here.
    const commits = sample(m.body, "edgehub_store_commit_duration_seconds_count") ?? 0;
    expect(commits).toBeGreaterThanOrEqual(1);
    expect(commits).toBeLessThanOrEqual(7);
    const stats = await hub.store.stats();
    expect(sample(m.body, "edgehub_store_bytes")).toBe(stats.bytes);
    expect(sample(m.body, "edgehub_store_quota_bytes")).toBe(stats.maxSizeBytes);
    // A root has no parent link: no series.
    expect(m.body).not.toMatch(/^edgehub_upstream_link_up /m);
    // No secret of the hub on the listener.
    const key = hub.registry.getDevice("sensor-1")?.authentication.symmetricKey?.primaryKey ?? "";
    expect(m.body).not.toContain(key);

    // Counters go on from where they were: 3 more messages, 10 in all.
    for (let i = 0; i < 3; i++) await device.sendEvent(new Message("x"));
    const again = await localGet(port, "/metrics");
    expect(sample(again.body, "edgehub_messages_in_total", 'endpoint="$events"')).toBe(10);
  });

  it("counts the service API's 401s and 403s by code, beside MQTT's", async () => {
    const hub = await startHub(await tempDir(), { metrics: { port: 0 } });
    const wrongKey = Buffer.alloc(32, 9).toString("base64");
    const refused: Array<[Record<string, string>, number]> = [
      [{ authorization: serviceToken(hub, wrongKey) }, 401],
      [{ authorization: serviceToken(hub, wrongKey) }, 401],
      [{ authorization: "SharedAccessSignature garbage" }, 401],
    ];
    for (const [headers, status] of refused)
      expect((await call(hub, "GET", "/devices", undefined, headers)).status).toBe(status);
    // A module calling a method on a device outside its own: 403.
    await hub.registry.createDevice({ deviceId: "d1" });
    await hub.registry.createDevice({ deviceId: "d2" });
    const m = await hub.registry.createModule({ deviceId: "d1", moduleId: "m" });
    const key = m.authentication.symmetricKey?.primaryKey ?? "";
    const forbidden = await callAsModule(
      hub,
      "POST",
      "/twins/d2/methods",
      { methodName: "x" },
      {
        deviceId: "d1",
        moduleId: "m",
        key,
      },
    );
    expect(forbidden.status).toBe(403);
    // The hub's own login is not counted.
    expect((await call(hub, "GET", "/devices")).status).toBe(200);

    const body = (await localGet(hub.ports.metrics, "/metrics")).body;
    expect(sample(body, "edgehub_auth_failures_total", 'transport="https",code="AUTH_BAD_SIGNATURE"')).toBe(
      2,
    );
    expect(sample(body, "edgehub_auth_failures_total", 'transport="https",code="AUTH_BAD_TOKEN"')).toBe(1);
    expect(sample(body, "edgehub_auth_failures_total", 'transport="https",code="AUTH_NOT_IN_SCOPE"')).toBe(1);
    expect(body).not.toMatch(/^edgehub_auth_failures_total\{transport="mqtt"/m);
  });

  it("answers /healthz, and /readyz 200 while serving, 503 once the store is closed", async () => {
    const hub = await startHub(await tempDir(), { metrics: { port: 0 } });
    const port = hub.ports.metrics;
    expect(await localGet(port, "/healthz")).toMatchObject({ status: 200, body: "ok\n" });
    const ready = await localGet(port, "/readyz");
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.body)).toEqual({ ready: true, store: "open", listeners: "up", link: "none" });
    await hub.store.close();
    const closed = await localGet(port, "/readyz");
    expect(closed.status).toBe(503);
    expect(JSON.parse(closed.body)).toMatchObject({ ready: false, store: "closed" });
    // The scrape still answers, without the store's series.
    const m = await localGet(port, "/metrics");
    expect(m.status).toBe(200);
    expect(m.body).toMatch(/^edgehub_connected_clients 0$/m);
  });

  it("serves the status page and its JSON, refuses other Hosts and methods", async () => {
    const hub = await startHub(await tempDir(), { metrics: { port: 0 } });
    const port = hub.ports.metrics;
    const page = await localGet(port, "/");
    expect(page.status).toBe(200);
    expect(page.type).toContain("text/html");
    const json = JSON.parse((await localGet(port, "/status.json")).body) as {
      status: { link: { state: string }; backlog: { messages: number } };
      samples: unknown[];
    };
    expect(json.status.link.state).toBe("none");
    expect(json.status.backlog.messages).toBe(0);
    expect(json.samples.length).toBeGreaterThanOrEqual(1);
    // DNS rebinding: a page of another site naming its own host is refused.
    expect((await localGet(port, "/status.json", "evil.example:9600")).status).toBe(421);
    expect((await localGet(port, "/status.json", `localhost:${port}`)).status).toBe(200);
    expect((await localGet(port, "/nothing")).status).toBe(404);
    const post = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: "127.0.0.1", port, path: "/metrics", method: "POST" }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", reject);
      req.end();
    });
    expect(post).toBe(405);
  });

  it("is off with metrics: false", async () => {
    const hub = await startHub(await tempDir(), { metrics: false });
    expect(hub.ports.metrics).toBe(0);
  });

  it("fails the start when a configured port is taken; starts without it when the default one is", async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", () => r()));
    const taken = (blocker.address() as net.AddressInfo).port;
    try {
      await expect(startHub(await tempDir(), { metrics: { port: taken } })).rejects.toMatchObject({
        code: "CONFIG_INVALID",
        message: expect.stringContaining("metrics"),
      });
      // The default port taken (by another hub, in tests): the hub runs, and says why not.
      const occupied = await listenOn(9600);
      const log = recordingLogger();
      const hub = await startHub(await tempDir(), {}, log);
      expect(hub.ports.mqtts).toBeGreaterThan(0);
      if (occupied) {
        expect(hub.ports.metrics).toBe(0);
        expect(log.events.map((e) => e.event)).toContain("metrics-not-listening");
      }
      // (Taken by someone else there is nothing of ours to close: a promise on `occupied?.close` would never settle.)
      if (occupied) await new Promise((r) => occupied.close(r));
    } finally {
      blocker.close();
    }
  });
});

/** A server on 127.0.0.1:`port`, or undefined when someone else has it already (then it is taken anyway). */
async function listenOn(port: number): Promise<net.Server | undefined> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once("error", () => resolve(undefined));
    s.listen(port, "127.0.0.1", () => resolve(s));
  });
}

describe("metrics config", () => {
  it("defaults to 127.0.0.1:9600 and validates the key", () => {
    expect(loadConfig({}).metrics).toEqual({ host: "127.0.0.1", port: 9600, required: false });
    expect(loadConfig({ metrics: false }).metrics).toBe(false);
    expect(loadConfig({ metrics: { port: 0 } }).metrics).toEqual({
      host: "127.0.0.1",
      port: 0,
      required: true,
    });
    expect(loadConfig({ metrics: { host: "0.0.0.0" } }).metrics).toEqual({
      host: "0.0.0.0",
      port: 9600,
      required: false,
    });
    const bad: Array<[unknown, string]> = [
      [{ port: 70000 }, "config key metrics.port: must be a port number 0-65535"],
      [{ port: "9600" }, "config key metrics.port"],
      [{ host: 5 }, "config key metrics.host: must be an address"],
      [{ path: "/m" }, "config key metrics.path: is not a known key"],
      [true, "config key metrics: must be {host, port} or false"],
    ];
    for (const [metrics, message] of bad)
      expect(() => loadConfig({ metrics })).toThrow(
        expect.objectContaining({ code: "CONFIG_INVALID", message: expect.stringContaining(message) }),
      );
  });

  it("EdgeHub.start refuses a bad metrics key before opening anything", async () => {
    await expect(
      EdgeHub.start({ dataDir: await tempDir(), metrics: { port: -1 } }, silentLogger),
    ).rejects.toMatchObject({ code: "CONFIG_INVALID" });
  });
});
