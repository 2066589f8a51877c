import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../ts/config/config.js";
import type { EdgeHub, HubConfigInput } from "../../ts/index.js";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  startEdge,
  startRoot,
  synced,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { connectedDevice, recordingLogger, startHub, stopHub } from "../helpers/hub.js";
import { connectedRaw, publishSeq, type RawClient } from "../helpers/mqtt-raw.js";
import { fixedListen, freePort, hubProcess } from "../helpers/process.js";
import { call } from "../helpers/service.js";

interface SharesStatus {
  maxSizeBytesPerIdentity: number;
  refused: number;
  identities: number;
  top: Array<{ identity: string; bytes: number }>;
}

/** `identityShares` of `GET /edge/status`, over the service API. */
async function shares(hub: EdgeHub): Promise<SharesStatus | null> {
  const reply = await call(hub, "GET", "/edge/status");
  expect(reply.status).toBe(200);
  return (reply.body as { identityShares: SharesStatus | null }).identityShares;
}

const bytesOf = (s: SharesStatus | null, identity: string) =>
  s?.top.find((t) => t.identity === identity)?.bytes ?? 0;

const queueBytes = async (hub: EdgeHub, name: string) =>
  (await hub.store.stats()).queues.find((q) => q.name === name)?.bytes ?? 0;

/** Publishes 1000-byte messages from `deviceId` until the hub refuses one; how many it took. */
async function fill(c: RawClient, deviceId: string, max = 200): Promise<number> {
  for (let seq = 0; seq < max; seq++)
    if (!(await publishSeq(c, deviceId, seq, Buffer.alloc(1000, 7)))) return seq;
  throw new Error(`${deviceId} was never refused`);
}

/** The codes the hub gave when it refused messages (the device only sees the disconnect). */
const refusals = (log: ReturnType<typeof recordingLogger>) =>
  log.events.filter((e) => e.event === "client-closed" && e.fields.code).map((e) => e.fields.code);

/** A root on fixed ports (so it can come back), stopped; an edge under it with `extra`; children leaf1, leaf2. */
async function offlineEdge(extra: HubConfigInput) {
  const rootDir = await tempDir();
  const listen = await fixedListen();
  const root = await startRoot(rootDir, { listen });
  const parent = await edgeIdentity(root, "edge1");
  const keys = { leaf1: await childOf(root, "edge1", "leaf1"), leaf2: await childOf(root, "edge1", "leaf2") };
  const log = recordingLogger();
  const edge = await startEdge(await tempDir(), parent, extra, log);
  await synced(edge);
  await stopHub(root);
  const raw = (id: "leaf1" | "leaf2") => connectedRaw(edge.ports.mqtts, edge.caCertificate, id, keys[id]);
  return { edge, keys, log, raw, restartRoot: () => startRoot(rootDir, { listen }) };
}

const quota = (limits: Record<string, unknown>): HubConfigInput => ({
  storeAndForwardConfiguration: { storeLimits: { maxSizeBytes: 40_000, whenFull: "reject", ...limits } },
});

describe("per-identity share of the store quota", () => {
  it("without a share, one runaway device fills the quota and a second device is refused too (STORE_FULL)", async () => {
    const { edge, log, raw } = await offlineEdge(quota({}));
    expect(await fill(await raw("leaf1"), "leaf1")).toBeGreaterThan(30);
    expect(await publishSeq(await raw("leaf2"), "leaf2", 0, Buffer.alloc(1000))).toBe(false);
    expect(refusals(log)).toEqual(["STORE_FULL", "STORE_FULL"]);
    expect(await shares(edge)).toBeNull();
  });

  it("with a share, refuses the runaway device at its share while another device keeps being accepted, and takes it again once its backlog is drained", async () => {
    const { edge, keys, log, raw, restartRoot } = await offlineEdge(
      quota({ maxSizeBytesPerIdentity: 12_000 }),
    );
    const taken = await fill(await raw("leaf1"), "leaf1");
    expect(taken).toBeGreaterThan(5);
    expect(taken).toBeLessThan(12);
    expect(refusals(log)).toEqual(["STORE_SHARE_EXCEEDED"]);
    // The second device, with the official SDK, through the edge as its gateway.
    const leaf2 = await childClient(gatewayOf(edge), "leaf2", keys.leaf2);
    await leaf2.open();
    for (let i = 0; i < 5; i++) await leaf2.sendEvent(new Message(Buffer.alloc(1000, 2)));
    const s = await shares(edge);
    expect(s).toMatchObject({ maxSizeBytesPerIdentity: 12_000, identities: 2 });
    expect(s?.top.map((t) => t.identity)).toEqual(["leaf1", "leaf2"]);
    expect(bytesOf(s, "leaf1")).toBeLessThanOrEqual(12_000);
    expect(bytesOf(s, "leaf1")).toBeGreaterThan(12_000 - 1100);
    // Counted as the store counts: the two senders are all the upstream queue holds.
    expect(bytesOf(s, "leaf1") + bytesOf(s, "leaf2")).toBe(await queueBytes(edge, "$upstream"));
    expect(s?.refused).toBe(1);
    // Still refused while its backlog waits.
    expect(await publishSeq(await raw("leaf1"), "leaf1", 100, Buffer.alloc(1000))).toBe(false);

    // The parent returns: the backlog drains (acknowledged), and leaf1 is accepted again.
    await restartRoot();
    await eventually("drained", async () => (await queueBytes(edge, "$upstream")) === 0);
    expect(await publishSeq(await raw("leaf1"), "leaf1", 101)).toBe(true);
    await eventually("nothing left to charge", async () => bytesOf(await shares(edge), "leaf1") < 1100);
  });

  it("takes a runaway device again once its backlog expires", async () => {
    const log = recordingLogger();
    // A root keeps device-to-cloud messages in its events queue for eventsRetentionSecs.
    const hub = await startHub(
      await tempDir(),
      { eventsRetentionSecs: 2, ...quota({ maxSizeBytesPerIdentity: 5000 }) },
      log,
    );
    await hub.registry.createDevice({ deviceId: "dev1" });
    const key = hub.registry.getDevice("dev1")?.authentication.symmetricKey?.primaryKey ?? "";
    const raw = () => connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev1", key);
    // Four fit in the share (a fifth only if one expired meanwhile).
    expect(await fill(await raw(), "dev1")).toBeGreaterThanOrEqual(4);
    const dev2 = await connectedDevice(hub, "dev2");
    await dev2.sendEvent(new Message(Buffer.alloc(1000)));
    expect(refusals(log)).toEqual(["STORE_SHARE_EXCEEDED"]);
    await eventually("expired", async () => (await queueBytes(hub, "$events")) === 0);
    expect(await publishSeq(await raw(), "dev1", 10, Buffer.alloc(1000))).toBe(true);
    expect(bytesOf(await shares(hub), "dev1")).toBe(await queueBytes(hub, "$events"));
  });

  it("keeps the count across a restart: the runaway device is still refused, the other accepted", async () => {
    const dir = await tempDir();
    const config = quota({ maxSizeBytesPerIdentity: 5000 });
    const log = recordingLogger();
    let hub = await startHub(dir, config, log);
    await hub.registry.createDevice({ deviceId: "dev1" });
    const key = hub.registry.getDevice("dev1")?.authentication.symmetricKey?.primaryKey ?? "";
    expect(await fill(await connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev1", key), "dev1")).toBe(4);
    const before = bytesOf(await shares(hub), "dev1");
    expect(before).toBeGreaterThan(4000);
    await stopHub(hub);

    hub = await startHub(dir, config, log);
    expect(bytesOf(await shares(hub), "dev1")).toBe(before);
    const c = await connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev1", key);
    expect(await publishSeq(c, "dev1", 50, Buffer.alloc(1000))).toBe(false);
    expect(refusals(log)).toEqual(["STORE_SHARE_EXCEEDED", "STORE_SHARE_EXCEEDED"]);
    const dev2 = await connectedDevice(hub, "dev2");
    await dev2.sendEvent(new Message(Buffer.alloc(1000)));
    expect((await shares(hub))?.top.map((t) => t.identity)).toEqual(["dev1", "dev2"]);
  });

  it("takes the share from the config and, live, from the parent's $edgeHub desired properties", async () => {
    expect(() => loadConfig(quota({ maxSizeBytesPerIdentity: -1 }))).toThrow(
      /storeLimits\.maxSizeBytesPerIdentity: must be 0 \(off\) or a positive integer/,
    );
    expect(
      loadConfig({ $edgeHub: { "properties.desired": quota({ maxSizeBytesPerIdentity: 9000 }) } }),
    ).toMatchObject({
      maxSizeBytes: 40_000,
      maxSizeBytesPerIdentity: 9000,
    });
    const root = await startRoot(await tempDir());
    const edge = await startEdge(
      await tempDir(),
      await edgeIdentity(root, "edge1"),
      quota({ maxSizeBytesPerIdentity: 9000 }),
    );
    await eventually("online", () => edge.upstream?.online === true);
    expect((await shares(edge))?.maxSizeBytesPerIdentity).toBe(9000);
    await root.twins.patchDesired("edge1/$edgeHub", quota({ maxSizeBytesPerIdentity: 5000 }));
    await eventually(
      "share from the parent",
      async () => (await shares(edge))?.maxSizeBytesPerIdentity === 5000,
    );
    await root.twins.patchDesired("edge1/$edgeHub", quota({ maxSizeBytesPerIdentity: 0 }));
    await eventually("turned off", async () => (await shares(edge)) === null);
  });

  it("keeps the count across a SIGKILL of the hub process", async () => {
    const dir = await tempDir();
    const config = quota({ maxSizeBytesPerIdentity: 5000 });
    // The devices are registered first, by the hub in this process.
    let hub = await startHub(dir, config);
    const key =
      (await hub.registry.createDevice({ deviceId: "dev1" })).authentication.symmetricKey?.primaryKey ?? "";
    await stopHub(hub);
    const mqtts = await freePort();
    const proc = await hubProcess(dir, {
      hostname: "localhost",
      dataDir: dir,
      listen: { host: "127.0.0.1", mqtts, https: await freePort(), amqps: false },
      ...config,
    });
    const ca = await readFile(join(dir, "certs", "ca.pem"), "utf8");
    expect(await fill(await connectedRaw(mqtts, ca, "dev1", key), "dev1")).toBe(4);
    await proc.stop("SIGKILL");

    const log = recordingLogger();
    hub = await startHub(dir, config, log);
    expect(bytesOf(await shares(hub), "dev1")).toBe(await queueBytes(hub, "$events"));
    expect(bytesOf(await shares(hub), "dev1")).toBeGreaterThan(4000);
    const c = await connectedRaw(hub.ports.mqtts, hub.caCertificate, "dev1", key);
    expect(await publishSeq(c, "dev1", 50, Buffer.alloc(1000))).toBe(false);
    expect(refusals(log)).toEqual(["STORE_SHARE_EXCEEDED"]);
  });
});
