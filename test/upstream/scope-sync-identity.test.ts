/**
 * One identity from the parent when a login cannot be placed (docs/upstream-forms.md §6,
 * "One identity", "Legacy one"): Microsoft's POST getDeviceAndModuleOnBehalfOf, the legacy
 * GET after the route answered 404, only the identity asked for and only if it hangs in this
 * hub's scope; and end to end, an official SDK device created at a real root after the edge
 * synced gets in on its next try without a whole scope sync.
 */
import { Client } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { describe, expect, it } from "vitest";
import { ORIGIN_EDGE_HEADER } from "../../ts/service/scope-identity.js";
import { ScopeIdentity } from "../../ts/upstream/scope-identity.js";
import { edgeIdentity, gatewayOf, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { recordingLogger } from "../helpers/hub.js";
import { RawHttpsParent, type RecordedRequest, scopeForm } from "../helpers/raw-https-parent.js";
import { childEdgeOf, device, json, module, syncedEdge } from "../helpers/scope-edge.js";

const EDGE1_SCOPE = "ms-azure-iot-edge://edge1-638000000000000000";
const child = (id: string) => device(id, { deviceScope: EDGE1_SCOPE, parentScopes: [EDGE1_SCOPE] });

/** A raw parent, an edge synced from it, and that edge's single-identity asker. */
async function site() {
  const parent = await RawHttpsParent.start();
  const edge = await syncedEdge(parent);
  const identity = new ScopeIdentity(edge.config, edge.credentials, edge.registry, edge.sync, edge.log, {
    retryDelayMs: () => 10,
  });
  const asked: RecordedRequest[] = [];
  const answer = (body: unknown) => {
    parent.identityAnswer = (req, res) => {
      asked.push(req);
      json(res, body);
    };
  };
  return { parent, edge, identity, asked, answer };
}

const header = (req: RecordedRequest, name: string) => {
  const at = req.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === name.toLowerCase());
  return at < 0 ? undefined : req.rawHeaders[at + 1];
};

describe("one identity from the parent", () => {
  it("POSTs getDeviceAndModuleOnBehalfOf as Microsoft's edge hub does, and takes the device, or the module with its device", async () => {
    const { edge, identity, asked, answer } = await site();
    answer({ devices: [child("leaf9")], modules: [], continuationLink: null });
    expect(await identity.fetch("leaf9", undefined)).toBe(true);
    expect(edge.registry.getDevice("leaf9")?.parentScopes).toEqual([EDGE1_SCOPE]);
    const [post] = asked;
    expect(`${post?.method} ${decodeURIComponent(post?.url ?? "")}`).toBe(
      scopeForm("nested.on-behalf-of") as string,
    );
    expect(header(post as RecordedRequest, ORIGIN_EDGE_HEADER)).toBe("edge1");
    expect(header(post as RecordedRequest, "Content-Type")).toBe("application/json; charset=utf-8");
    // IdentityOnBehalfOfRequest's fields in order, the null module left out; the chain this edge's.
    expect(post?.body).toBe('{"targetDeviceId":"leaf9","authChain":"edge1"}');

    answer({ devices: [child("leaf8")], modules: [module("leaf8", "m")], continuationLink: null });
    expect(await identity.fetch("leaf8", "m")).toBe(true);
    expect(JSON.parse(asked[1]?.body ?? "")).toEqual({
      targetDeviceId: "leaf8",
      targetModuleId: "m",
      authChain: "edge1",
    });
    expect(edge.registry.getModule("leaf8", "m")).toBeDefined();
    // The whole scope was never asked for again.
    expect(edge.log.events.filter((e) => e.event === "scope-synced")).toHaveLength(1);
  });

  it("takes only what was asked for and only what hangs in this hub's scope; a bad answer changes nothing", async () => {
    const { edge, identity, answer } = await site();
    const before = edge.ids();
    // Parented elsewhere: not this hub's to authenticate.
    answer({
      devices: [
        device("stray", {
          deviceScope: "ms-azure-iot-edge://edge5-1",
          parentScopes: ["ms-azure-iot-edge://edge5-1"],
        }),
      ],
      modules: [],
      continuationLink: null,
    });
    expect(await identity.fetch("stray", undefined)).toBe(false);
    // Extra records ride along: not taken.
    answer({
      devices: [child("asked"), child("extra")],
      modules: [module("keep-me", "sneaky")],
      continuationLink: null,
    });
    expect(await identity.fetch("asked", undefined)).toBe(true);
    expect(edge.registry.getDevice("extra")).toBeUndefined();
    expect(edge.registry.getModule("keep-me", "sneaky")).toBeUndefined();
    // A module without its device, here or in the answer.
    answer({ devices: [], modules: [module("ghost", "m")], continuationLink: null });
    expect(await identity.fetch("ghost", "m")).toBe(false);
    // Not a scope page at all, or a record off IoT Hub's shape.
    answer("not json");
    expect(await identity.fetch("x1", undefined)).toBe(false);
    answer({
      devices: [{ deviceId: "x2", status: "enabled", authentication: { type: "magic" } }],
      modules: [],
    });
    expect(await identity.fetch("x2", undefined)).toBe(false);
    expect(edge.ids()).toEqual([...before, "asked"].sort());
    expect(edge.log.events.filter((e) => e.event === "scope-identity-failed")).toHaveLength(1);
  });

  it("falls back to the legacy GET deviceAndModuleInDeviceScope when the POST route answers 404, and stays with it", async () => {
    const { identity, edge, parent, asked } = await site();
    parent.identityAnswer = (req, res) => {
      asked.push(req);
      if (req.method === "POST") res.writeHead(404).end();
      else
        json(res, {
          devices: [child(new URLSearchParams(req.url.split("?")[1]).get("targetDeviceId") ?? "")],
          modules: [],
          continuationLink: null,
        });
    };
    expect(await identity.fetch("leaf1", undefined)).toBe(true);
    expect(edge.registry.getDevice("leaf1")).toBeDefined();
    expect(asked.map((r) => r.method)).toEqual(["POST", "GET"]);
    expect(`GET ${decodeURIComponent(asked[1]?.url ?? "")}`).toBe(scopeForm("legacy.get-one") as string);
    expect(asked[1]?.body).toBe("");
    expect(await identity.fetch("leaf2", undefined)).toBe(true);
    expect(asked.map((r) => r.method)).toEqual(["POST", "GET", "GET"]);
    expect(parent.refused).toEqual([]);
  });

  it("asks once per id in ten seconds and never for an id that is no identity id", async () => {
    const { identity, asked, answer } = await site();
    answer({ devices: [child("leaf9")], modules: [], continuationLink: null });
    identity.request("leaf9");
    identity.request("leaf9");
    for (const bad of ["a/b/c", "", "x y", "#".repeat(200), "leaf9/"]) identity.request(bad);
    await eventually("one ask", () => asked.length === 1);
    identity.request("leaf9");
    expect(asked).toHaveLength(1);
  });
});

describe("a device created after the edge synced, against a real root", () => {
  it("is refused once, fetched alone on behalf of the edge, and gets in on its next try; a device of another edge never does", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const log = recordingLogger();
    const edge = await startEdge(await tempDir(), parent, {}, log);
    await synced(edge);
    const syncs = () => log.events.filter((e) => e.event === "scope-synced").length;
    const before = syncs();
    const scope = root.registry.getDevice("edge1")?.deviceScope;
    const late = await root.registry.createDevice({ deviceId: "late", deviceScope: scope });
    await root.registry.createDevice({ deviceId: "edge5", capabilities: { iotEdge: true } });
    const stranger = await root.registry.createDevice({
      deviceId: "stranger",
      deviceScope: root.registry.getDevice("edge5")?.deviceScope,
    });
    const gateway = gatewayOf(edge);
    const opens = async (id: string, key: string): Promise<boolean> => {
      const cs = `HostName=localhost;DeviceId=${id};SharedAccessKey=${key};GatewayHostName=127.0.0.1:${gateway.port}`;
      const client = Client.fromConnectionString(cs, Mqtt);
      await client.setOptions({ ca: gateway.ca });
      try {
        await client.open();
        await client.close();
        return true;
      } catch {
        await client.close().catch(() => undefined);
        return false;
      }
    };
    expect(await opens("late", late.authentication.symmetricKey?.primaryKey ?? "")).toBe(false);
    await eventually("late gets in", () => opens("late", late.authentication.symmetricKey?.primaryKey ?? ""));
    expect(edge.registry.getDevice("late")?.authentication).toEqual(late.authentication);
    expect(log.events.find((e) => e.event === "scope-identity")?.fields).toMatchObject({
      deviceId: "late",
      found: true,
    });

    expect(await opens("stranger", stranger.authentication.symmetricKey?.primaryKey ?? "")).toBe(false);
    await eventually("the root said nothing of it", () =>
      log.events.some(
        (e) => e.event === "scope-identity" && e.fields.deviceId === "stranger" && e.fields.found === false,
      ),
    );
    expect(await opens("stranger", stranger.authentication.symmetricKey?.primaryKey ?? "")).toBe(false);
    expect(edge.registry.getDevice("stranger")).toBeUndefined();
    // No whole scope sync for either.
    expect(syncs()).toBe(before);
  }, 60_000);

  it("root <- edge1 <- edge2: a leaf of edge2 made late is asked of edge1, which asks the root on edge2's behalf (chain edge2;edge1)", async () => {
    const root = await startRoot(await tempDir(), { allowNesting: true });
    const edge1Parent = await edgeIdentity(root, "edge1");
    const e2 = await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [root.registry.getDevice("edge1")?.deviceScope as string],
    });
    const edge1 = await startEdge(await tempDir(), edge1Parent, { allowNesting: true });
    await synced(edge1);
    // edge2's own asker, against edge1 (which serves the route from its cache, then its parent).
    const edge2 = await childEdgeOf(edge1, "edge2", e2.authentication.symmetricKey?.primaryKey ?? "");
    expect(await edge2.sync.sync(), JSON.stringify(edge2.reasons())).toBe(true);
    const identity = new ScopeIdentity(
      edge2.config,
      edge2.credentials,
      edge2.registry,
      edge2.sync,
      edge2.log,
      {
        retryDelayMs: () => 10,
      },
    );
    const late = await root.registry.createDevice({
      deviceId: "late2",
      deviceScope: e2.deviceScope,
    });
    const elsewhere = await root.registry.createDevice({
      deviceId: "late1",
      deviceScope: root.registry.getDevice("edge1")?.deviceScope,
    });
    expect(await identity.fetch("late2", undefined)).toBe(true);
    expect(edge2.registry.getDevice("late2")?.authentication).toEqual(late.authentication);
    expect(edge1.registry.getDevice("late2")?.authentication).toEqual(late.authentication);
    // edge1's own leaf is not edge2's to have, though edge1 may know it.
    expect(elsewhere.deviceId).toBe("late1");
    expect(await identity.fetch("late1", undefined)).toBe(false);
    expect(edge2.registry.getDevice("late1")).toBeUndefined();
  }, 60_000);
});
