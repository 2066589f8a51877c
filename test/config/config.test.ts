/**
 * The config keys' one declaration (ts/config/schema.ts): a bad value or an unknown key is
 * refused naming its path, and `edgehub start --help` lists exactly the keys the hub takes.
 */
import { describe, expect, it } from "vitest";
import { usage } from "../../ts/cli/command.js";
import { startCommand } from "../../ts/cli/start.js";
import { configUsage, loadConfig, storeAndForwardConfig } from "../../ts/config/config.js";

/** A config giving every key a value other than its default (routes by one name, `r`). */
const EVERY_KEY = {
  hostname: "gw1.local",
  dataDir: "/tmp/edgehub-config-test",
  listen: { host: "127.0.0.1", mqtts: 18883, https: 18443, amqps: 15671 },
  tls: { certFile: "server.pem", keyFile: "server-key.pem", caFile: "ca.pem" },
  storeAndForwardConfiguration: {
    timeToLiveSecs: 60,
    storeLimits: { maxSizeBytes: 1_000_000, whenFull: "drop-oldest", maxSizeBytesPerIdentity: 1000 },
  },
  eventsRetentionSecs: 60,
  eventHub: { name: "telemetry", consumerGroups: ["dashboards"], maxReceivers: 4 },
  trustedDeviceCaFiles: ["root.pem"],
  allowNesting: false,
  parent: {
    type: "mqtt",
    hostname: "broker.local",
    hubHostname: "root.local",
    port: 1883,
    httpsPort: 8443,
    deviceId: "edge1",
    sharedAccessKey: Buffer.alloc(32, 1).toString("base64"),
    certFile: "edge.pem",
    keyFile: "edge-key.pem",
    caFile: "parent-ca.pem",
    username: "u",
    password: "p",
    topic: "t/{deviceId}",
    window: 10,
    order: "live-first",
    maxMessagesPerSec: 50,
    scopeRefreshSecs: 60,
    maxBackoffMs: 500,
    keepaliveSecs: 10,
    ackTimeoutMs: 5000,
  },
  routes: { r: { route: "FROM /messages/* INTO $upstream", priority: 1, timeToLiveSecs: 30 } },
  $edgeHub: { "properties.desired": { schemaVersion: "1.1" } },
  modulesContent: { $edgeAgent: {} },
  logLevel: "debug",
  durability: "wal",
  limits: {
    maxConnections: 10,
    maxUnauthenticatedPerAddress: 2,
    tlsHandshakeTimeoutMs: 1000,
    mqttConnectTimeoutMs: 1000,
    httpHeadersTimeoutMs: 1000,
    httpRequestTimeoutMs: 2000,
    httpKeepAliveTimeoutMs: 1000,
    maxPendingMethodCallsPerTarget: 1,
    maxPendingMethodCallsPerCaller: 2,
    maxPendingMethodBytes: 1024,
  },
  metrics: { host: "0.0.0.0", port: 19600 },
};

/** Every key path of `o`, depth first; a route's name shows as `<name>`; manifest sections are leaves. */
function paths(o: Record<string, unknown>, prefix = ""): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    const path = prefix === "routes" ? `${prefix}.<name>` : prefix ? `${prefix}.${k}` : k;
    if (prefix !== "routes") out.push(path);
    const leaf = k === "$edgeHub" || k === "modulesContent" || Array.isArray(v);
    if (!leaf && typeof v === "object" && v !== null) out.push(...paths(v as Record<string, unknown>, path));
  }
  return out;
}

describe("config keys", () => {
  it("takes a value other than the default for every key", () => {
    const c = loadConfig(EVERY_KEY);
    expect(c).toMatchObject({
      hostname: "gw1.local",
      listen: { host: "127.0.0.1", mqtts: 18883, https: 18443, amqps: 15671 },
      timeToLiveSecs: 60,
      maxSizeBytes: 1_000_000,
      whenFull: "drop-oldest",
      maxSizeBytesPerIdentity: 1000,
      allowNesting: false,
      logLevel: "debug",
      durability: "wal",
      metrics: { host: "0.0.0.0", port: 19600, required: true },
      eventHub: { name: "telemetry", consumerGroups: ["dashboards"], maxReceivers: 4 },
    });
    expect(c.parent).toMatchObject({
      type: "mqtt",
      hubHostname: "root.local",
      window: 10,
      ackTimeoutMs: 5000,
    });
    expect(c.limits.maxPendingMethodBytes).toBe(1024);
    expect(c.routes.r).toMatchObject({ priority: 1, timeToLiveSecs: 30 });
  });

  it.each([
    ["listen.host", "0.0.0.0"],
    ["listen.mqtts", 8883],
    ["listen.https", 8443],
    ["listen.amqps", 5671],
    ["timeToLiveSecs", 7200],
    ["maxSizeBytes", 10 * 2 ** 30],
    ["whenFull", "reject"],
    ["maxSizeBytesPerIdentity", 0],
    ["eventsRetentionSecs", 86_400],
    // The event hub is named as IoT Hub names its built-in endpoint: the hostname's first label.
    ["eventHub", { name: "gw1", consumerGroups: [], maxReceivers: 64 }],
    ["trustedDeviceCaFiles", []],
    ["allowNesting", true],
    ["logLevel", "info"],
    ["durability", "fsync"],
    ["tls", undefined],
    ["metrics", { host: "127.0.0.1", port: 9600, required: false }],
    // The kind follows the hub's name when unset: an Azure IoT Hub name is never one of ours.
    ["parent.type", "iothub"],
    ["parent.hubHostname", "hub.azure-devices.net"],
    ["parent.port", 8883],
    ["parent.httpsPort", 443],
    ["parent.window", 100],
    ["parent.order", "stored"],
    ["parent.topic", "edgehub/{deviceId}/messages/events"],
    ["parent.scopeRefreshSecs", 3600],
    ["limits.maxConnections", 1000],
  ])("applies the default of %s when it is absent", (path, value) => {
    const c = loadConfig({
      hostname: "gw1.local",
      parent: { hostname: "hub.azure-devices.net", deviceId: "e", certFile: "c", keyFile: "k" },
    });
    const got = path.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], c);
    expect(got).toEqual(value);
  });

  it("turns the AMQP listener off with listen.amqps false, and takes 0 for a free port", () => {
    expect(loadConfig({ listen: { amqps: false } }).listen.amqps).toBe(false);
    expect(loadConfig({ listen: { amqps: 0 } }).listen.amqps).toBe(0);
  });

  it.each([
    [{ hostname: "gw 1" }, "hostname: must be a DNS name"],
    [{ listen: { mqtts: 70000 } }, "listen.mqtts: must be a port number 0-65535"],
    [{ listen: { tls: true } }, "listen.tls: is not a known key"],
    [{ listen: 8883 }, "listen: must be an object"],
    [{ listen: { amqps: true } }, "listen.amqps: must be a port number 0-65535 or false"],
    [{ listen: { amqps: -1 } }, "listen.amqps: must be a port number 0-65535 or false"],
    [{ colour: "blue" }, "colour: is not a known key"],
    [{ tls: { certFile: "c", keyFile: "k" } }, "tls.caFile: is required"],
    [
      { storeAndForwardConfiguration: { timeToLiveSecs: 0 } },
      "storeAndForwardConfiguration.timeToLiveSecs: must be -1 or a positive integer",
    ],
    [
      { storeAndForwardConfiguration: { storeLimits: { whenFull: "evict" } } },
      'storeAndForwardConfiguration.storeLimits.whenFull: must be "reject" or "drop-oldest"',
    ],
    [
      { parent: { hostname: "p", deviceId: "e", sharedAccessKey: "c2hvcnQ=" } },
      "parent.sharedAccessKey: must be base64 of at least 16 bytes",
    ],
    [
      { parent: { hostname: "p", sharedAccessKey: Buffer.alloc(16).toString("base64") } },
      "parent.deviceId: is required",
    ],
    [
      { parent: { hostname: "p", deviceId: "e", certFile: "c" } },
      "parent.certFile: and parent.keyFile go together",
    ],
    [
      { parent: { hostname: "p", deviceId: "e" } },
      "parent.sharedAccessKey: or parent.certFile + parent.keyFile is required",
    ],
    [
      { parent: { hostname: "p", deviceId: "e", type: "amqp", certFile: "c", keyFile: "k" } },
      'parent.type: must be "edgehub", "iothub" or "mqtt"',
    ],
    [
      { routes: { r: { route: "FROM /messages/* INTO $upstream", priority: 10 } } },
      "routes.r.priority: must be an integer 0-9",
    ],
    [
      { routes: { r: { route: "FROM /messages/* INTO $upstream", weight: 1 } } },
      "routes.r.weight: is not a known key",
    ],
    // JSON, as a config file arrives: `__proto__` is an own key there, a route name like any other.
    ['{"routes": {"__proto__": "FROM nowhere"}}', "routes.__proto__: at column"],
    [
      { limits: { tlsHandshakeTimeoutMs: 2 ** 31 } },
      "limits.tlsHandshakeTimeoutMs: must be a positive integer up to 2147483647",
    ],
    [{ metrics: { port: -1 } }, "metrics.port: must be a port number 0-65535"],
    [{ logLevel: "trace" }, "logLevel: must be debug, info, warn or error"],
    [{ durability: "none" }, 'durability: must be "fsync" or "wal"'],
    [{ trustedDeviceCaFiles: "ca.pem" }, "trustedDeviceCaFiles: must be a list of paths"],
    [{ eventHub: { name: "devices" } }, "eventHub.name: must be 1-50 letters"],
    [{ eventHub: { consumerGroups: ["$Default"] } }, "eventHub.consumerGroups"],
    [{ eventHub: { maxReceivers: 0 } }, "eventHub.maxReceivers: must be an integer 1-4096"],
  ])("refuses %j with CONFIG_INVALID naming the key", (raw, message) => {
    const input: unknown = typeof raw === "string" ? JSON.parse(raw) : raw;
    expect(() => loadConfig(input)).toThrow(
      expect.objectContaining({
        code: "CONFIG_INVALID",
        message: expect.stringContaining(`config key ${message}`),
      }),
    );
  });

  it("layers the parent's storeAndForwardConfiguration over the limits in force, refusing a bad one by its path", () => {
    const under = {
      timeToLiveSecs: 60,
      maxSizeBytes: 5000,
      whenFull: "drop-oldest",
      maxSizeBytesPerIdentity: 0,
    } as const;
    const key = "$edgeHub.storeAndForwardConfiguration";
    expect(storeAndForwardConfig(key, { storeLimits: { maxSizeBytes: 9000 } }, under)).toEqual({
      ...under,
      maxSizeBytes: 9000,
    });
    expect(storeAndForwardConfig(key, {}, under)).toEqual(under);
    for (const [sf, path] of [
      [{ storeLimits: 5 }, "storeLimits"],
      [{ timeToLiveSecs: "1h" }, "timeToLiveSecs"],
      [{ storeLimits: { whenFull: "evict" } }, "storeLimits.whenFull"],
      [{ ttl: 5 }, "ttl"],
    ] as const)
      expect(() => storeAndForwardConfig(key, sf, under)).toThrow(`config key ${key}.${path}: `);
  });

  it("lists every key in `edgehub start --help`, once, and nothing else", () => {
    const listed = configUsage()
      .split("\n")
      .filter((l) => l.startsWith("  ") && !l.startsWith("    "))
      .map((l) => l.trim().split(/\s+/)[0]);
    expect(listed).toEqual(paths(EVERY_KEY));
    const help = usage(startCommand);
    expect(help).toContain("usage: edgehub start [--config <file.json>]");
    expect(help).toContain(configUsage());
    expect(help).toMatch(
      / {2}parent\.window {2}\(a positive integer up to 16384; default 100\)\n {6}Unacknowledged/,
    );
  });
});
