/**
 * The `limits` config over real sockets: the connection cap across listeners, the TLS
 * handshake and HTTP header deadlines, the per-address cap on unauthenticated sockets,
 * their counters in `GET /edge/status`, and devices (the official SDK) getting in throughout.
 */
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { Message } from "azure-iot-device";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeHub, type Logger } from "../../ts/index.js";
import { addressKey } from "../../ts/protocol/admission.js";
import { RawAmqp } from "../helpers/amqp.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, startHub } from "../helpers/hub.js";
import { connectedRaw, publishSeq } from "../helpers/mqtt-raw.js";
import { call, serviceToken } from "../helpers/service.js";

interface LimitsStatus {
  maxConnections: number;
  open: number;
  unauthenticated: number;
  refused: { maxConnections: number; perAddress: number };
  timeouts: { tlsHandshake: number; mqttConnect: number; http: number };
}

async function limitsStatus(hub: EdgeHub): Promise<LimitsStatus> {
  const reply = await call(hub, "GET", "/edge/status");
  expect(reply.status).toBe(200);
  return (reply.body as { limits: LimitsStatus }).limits;
}

/** Sockets the tests opened, closed after each (the hubs are closed by the hub helper). */
const opened: net.Socket[] = [];

afterEach(() => {
  for (const s of opened.splice(0)) s.destroy();
});

/** A TCP connection that sends nothing (no ClientHello); resolves once connected. */
async function silentSocket(port: number, localAddress?: string): Promise<net.Socket> {
  const s = net.connect({ host: "127.0.0.1", port, ...(localAddress ? { localAddress } : {}) });
  s.on("error", () => undefined);
  opened.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once("connect", () => resolve());
    s.once("error", reject);
  });
  return s;
}

/** Whether the hub closes `s` within `ms` (true) or leaves it open (false). */
function closedWithin(s: net.Socket, ms: number): Promise<boolean> {
  if (s.destroyed) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    s.once("close", () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** A TLS connection attempt: "secure" if the handshake completes, "refused" if the hub closes it first. */
function tlsAttempt(hub: EdgeHub, port: number): Promise<"secure" | "refused"> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: "127.0.0.1", servername: "localhost", port, ca: hub.caCertificate });
    opened.push(s);
    s.once("secureConnect", () => resolve("secure"));
    s.once("error", () => resolve("refused"));
    s.once("close", () => resolve("refused"));
  });
}

/** `GET /devices` on a keep-alive agent's one socket: the status, and whether an open socket was reused. */
function keepAliveCall(
  hub: EdgeHub,
  agent: https.Agent,
  authorization: string,
): Promise<{ status: number; reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      {
        host: "localhost",
        port: hub.ports.https,
        path: "/devices?api-version=2021-04-12",
        ca: hub.caCertificate,
        agent,
        headers: { authorization },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function sendsTelemetry(hub: EdgeHub, deviceId: string): Promise<void> {
  const device = await connectedDevice(hub, deviceId);
  await device.sendEvent(new Message(`from ${deviceId}`));
}

describe("limits", () => {
  it("refuses the connection past maxConnections on every listener, counts it, and lets devices in once a slot frees", async () => {
    // Status calls and the SDK device need slots too: 2 silent sockets + 1 device + 1 status call.
    const hub = await startHub(await tempDir(), { ...BOTH_HEADS, limits: { maxConnections: 4 } });
    await sendsTelemetry(hub, "dev-a");
    const silent = [await silentSocket(hub.ports.mqtts), await silentSocket(hub.ports.https)];
    await eventually("3 sockets admitted", () =>
      hub.status().then((s) => (s.limits as LimitsStatus).open === 3),
    );
    const fourth = await silentSocket(hub.ports.mqtts);
    await eventually("4 sockets admitted", () =>
      hub.status().then((s) => (s.limits as LimitsStatus).open === 4),
    );
    expect(await tlsAttempt(hub, hub.ports.mqtts)).toBe("refused");
    expect(await tlsAttempt(hub, hub.ports.https)).toBe("refused");
    expect(await tlsAttempt(hub, hub.ports.amqps)).toBe("refused");
    fourth.destroy();
    await eventually("a slot is free", () => hub.status().then((s) => (s.limits as LimitsStatus).open === 3));
    const status = await limitsStatus(hub);
    expect(status.refused.maxConnections).toBe(3);
    expect(status.maxConnections).toBe(4);
    // The device connected before the flood still sends; the slot freed is a device's again.
    for (const s of silent) s.destroy();
    await sendsTelemetry(hub, "dev-b");
    expect(hub.connectedClients.sort()).toEqual(["dev-a", "dev-b"]);
  });

  it("closes a socket that never sends a ClientHello at the handshake deadline, on every TLS listener", async () => {
    const hub = await startHub(await tempDir(), { ...BOTH_HEADS, limits: { tlsHandshakeTimeoutMs: 300 } });
    await sendsTelemetry(hub, "dev-a");
    const silent = await Promise.all(
      [hub.ports.mqtts, hub.ports.https, hub.ports.amqps].map((p) => silentSocket(p)),
    );
    // Node's own deadline is 120 s: 5 s is far past ours and far short of its.
    expect(await Promise.all(silent.map((s) => closedWithin(s, 5000)))).toEqual([true, true, true]);
    expect((await limitsStatus(hub)).timeouts.tlsHandshake).toBe(3);
    await sendsTelemetry(hub, "dev-b");
  });

  it("closes an AMQP connection that authenticates no identity by the connect deadline, and counts it", async () => {
    const hub = await startHub(await tempDir(), { ...BOTH_HEADS, limits: { mqttConnectTimeoutMs: 300 } });
    // Opened (TLS, AMQP open) but never a token: held only until the deadline.
    const idle = await RawAmqp.open(hub);
    await idle.closed;
    const status = await limitsStatus(hub);
    expect(status.timeouts.mqttConnect).toBe(1);
    // Its slot is free again (the status call's own socket passed authentication).
    expect(status.unauthenticated).toBe(0);
  });

  it("drops a half-sent HTTPS request at the header deadline with a 408", async () => {
    const hub = await startHub(await tempDir(), {
      limits: { httpHeadersTimeoutMs: 300, httpRequestTimeoutMs: 1000 },
    });
    const s = tls.connect({
      host: "127.0.0.1",
      servername: "localhost",
      port: hub.ports.https,
      ca: hub.caCertificate,
    });
    opened.push(s);
    await new Promise<void>((resolve) => s.once("secureConnect", () => resolve()));
    let answer = "";
    s.on("data", (d: Buffer) => {
      answer += d.toString();
    });
    s.write("GET /edge/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
    // Node's defaults: 60 s for the headers, checked every 30 s.
    expect(await closedWithin(s, 5000)).toBe(true);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect((await limitsStatus(hub)).timeouts.http).toBe(1);
    await sendsTelemetry(hub, "dev-a");
  });

  it("caps unauthenticated sockets per remote address; authenticated ones and other addresses are not counted against it", async () => {
    const hub = await startHub(await tempDir(), { limits: { maxUnauthenticatedPerAddress: 2 } });
    const ids = ["dev-1", "dev-2", "dev-3"];
    for (const id of ids) await hub.registry.createDevice({ deviceId: id });
    const key = (id: string) => hub.registry.getDevice(id)?.authentication.symmetricKey?.primaryKey ?? "";
    // Two devices of 127.0.0.1 authenticated: they free their address's unauthenticated slots.
    const authed = [
      await connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev-1", key("dev-1")),
      await connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev-2", key("dev-2")),
    ];
    const silent = [await silentSocket(hub.ports.mqtts), await silentSocket(hub.ports.https)];
    await eventually("2 unauthenticated", () =>
      hub.status().then((s) => (s.limits as LimitsStatus).unauthenticated === 2),
    );
    // A third from 127.0.0.1, on either listener, is refused before TLS.
    expect(await tlsAttempt(hub, hub.ports.mqtts)).toBe("refused");
    expect(await tlsAttempt(hub, hub.ports.https)).toBe("refused");
    // Another host gets in and is served.
    const other = await connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev-3", key("dev-3"), "127.0.0.2");
    expect(await publishSeq(other, "dev-3", 1)).toBe(true);
    // The authenticated connections of the capped address keep working.
    for (const [i, c] of authed.entries()) expect(await publishSeq(c, ids[i] ?? "", 1)).toBe(true);
    for (const s of silent) s.destroy();
    await eventually("no unauthenticated socket left", () =>
      hub.status().then((s) => (s.limits as LimitsStatus).unauthenticated === 0),
    );
    // (The status call itself is an unauthenticated HTTPS socket of 127.0.0.1.)
    expect((await limitsStatus(hub)).refused.perAddress).toBe(2);
    // The address's slots are free again: an SDK device from it connects.
    await sendsTelemetry(hub, "dev-4");
  });

  it("counts an HTTPS socket as authenticated once a request on it passes authentication: keep-alive service clients past the per-address cap stay connected", async () => {
    const hub = await startHub(await tempDir(), {
      limits: { maxUnauthenticatedPerAddress: 2, httpKeepAliveTimeoutMs: 60_000 },
    });
    const agents = Array.from({ length: 5 }, () => new https.Agent({ keepAlive: true, maxSockets: 1 }));
    try {
      // Five service clients of 127.0.0.1, one keep-alive socket each, one call each.
      for (const agent of agents)
        expect(await keepAliveCall(hub, agent, serviceToken(hub))).toEqual({ status: 200, reused: false });
      // All five are still connected: a second call on each reuses its socket.
      for (const agent of agents)
        expect(await keepAliveCall(hub, agent, serviceToken(hub))).toEqual({ status: 200, reused: true });
      expect((await hub.status()).limits).toMatchObject({ open: 5, unauthenticated: 0 });
      // A socket whose request failed authentication stays unauthenticated, and counts.
      const refusedAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      agents.push(refusedAgent);
      expect(
        await keepAliveCall(
          hub,
          refusedAgent,
          "SharedAccessSignature sr=localhost&sig=x&se=1&skn=iothubowner",
        ),
      ).toEqual({
        status: 401,
        reused: false,
      });
      await silentSocket(hub.ports.https);
      await eventually("2 unauthenticated", () =>
        hub.status().then((s) => (s.limits as LimitsStatus).unauthenticated === 2),
      );
      expect(await tlsAttempt(hub, hub.ports.https)).toBe("refused");
      expect(((await hub.status()).limits as LimitsStatus).refused.perAddress).toBe(1);
      // The authenticated clients are served throughout.
      for (const agent of agents.slice(0, 5))
        expect(await keepAliveCall(hub, agent, serviceToken(hub))).toEqual({ status: 200, reused: true });
    } finally {
      for (const agent of agents) agent.destroy();
    }
  });

  it("logs a flood of refusals and of handshake timeouts once each, and counts every one", async () => {
    const events: string[] = [];
    const log: Logger = { log: (_level, event) => events.push(event) };
    const hub = await EdgeHub.start(
      {
        hostname: "localhost",
        dataDir: await tempDir(),
        listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
        limits: { maxUnauthenticatedPerAddress: 5, tlsHandshakeTimeoutMs: 200 },
      },
      log,
    );
    try {
      // Five sockets past their handshake, waiting for CONNECT (10 s), fill 127.0.0.1's cap.
      for (let i = 0; i < 5; i++) expect(await tlsAttempt(hub, hub.ports.mqtts)).toBe("secure");
      for (let i = 0; i < 20; i++) expect(await tlsAttempt(hub, hub.ports.mqtts)).toBe("refused");
      // Another host's sockets that never send a ClientHello.
      const silent = await Promise.all(
        Array.from({ length: 5 }, () => silentSocket(hub.ports.mqtts, "127.0.0.2")),
      );
      expect(await Promise.all(silent.map((s) => closedWithin(s, 5000)))).toEqual(silent.map(() => true));
      const status = (await hub.status()).limits as LimitsStatus;
      expect(status.refused.perAddress).toBe(20);
      expect(status.timeouts.tlsHandshake).toBe(5);
      expect(events.filter((e) => e === "connection-refused")).toHaveLength(1);
      expect(events.filter((e) => e === "connection-timed-out")).toHaveLength(1);
    } finally {
      await hub.close();
    }
  });

  it("keys the per-address cap by IPv4 address (also mapped into IPv6) and by IPv6 /64", () => {
    expect(addressKey("192.0.2.7")).toBe("192.0.2.7");
    expect(addressKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    const net64 = addressKey("2001:db8:0:12::1");
    expect(net64).toBe("2001:db8:0:12::/64");
    expect(addressKey("2001:0db8:0000:0012:ffff:1:2:3")).toBe(net64);
    expect(addressKey("2001:db8:0:13::1")).not.toBe(net64);
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });

  it("refuses a limits key it does not know, or a header deadline past the request deadline, naming the key", async () => {
    await expect(startHub(await tempDir(), { limits: { maxSockets: 5 } as never })).rejects.toThrow(
      /limits\.maxSockets: is not a known key/,
    );
    await expect(
      startHub(await tempDir(), { limits: { httpHeadersTimeoutMs: 5000, httpRequestTimeoutMs: 1000 } }),
    ).rejects.toThrow(/limits\.httpHeadersTimeoutMs/);
    await expect(startHub(await tempDir(), { limits: { maxConnections: 0 } })).rejects.toMatchObject({
      code: "CONFIG_INVALID",
    });
  });
});
