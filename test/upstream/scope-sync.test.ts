/**
 * The scope sync's wire forms and walk: Microsoft's nested POST, one sequence per edge from
 * this hub down (checked by a strict raw parent against the fixture of the form), the
 * legacy GET when the parent has no nested route, Microsoft's retries, and the walk against
 * a real root and a real middle edge hub serving from its cache.
 */
import { describe, expect, it } from "vitest";
import type { Device } from "../../ts/auth/registry.js";
import { nestedScopePath, scopePath } from "../../ts/service/scope.js";
import { SCOPE_RETRIES, scopeBackoffMs } from "../../ts/upstream/scope-http.js";
import { selfSigned } from "../helpers/certs.js";
import { edgeIdentity, startEdge, startRoot, synced } from "../helpers/edge.js";
import { tempDir } from "../helpers/fixtures.js";
import { RawHttpsParent, scopeForm } from "../helpers/raw-https-parent.js";
import { childEdgeOf, device, edgeDevice, edgeOf, json, module } from "../helpers/scope-edge.js";

const byId = (a: { deviceId: string }, b: { deviceId: string }) => (a.deviceId < b.deviceId ? -1 : 1);

describe("scope sync from a real root hub", () => {
  it("takes every record a real root sends, edge by edge and over several pages, skipping none", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const edge1 = root.registry.getDevice("edge1") as Device;
    const cert = await selfSigned("by-thumbprint");
    await root.registry.createDevice({
      deviceId: "by-thumbprint",
      deviceScope: edge1.deviceScope,
      authentication: {
        type: "selfSigned",
        x509Thumbprint: { primaryThumbprint: cert.thumbprint, secondaryThumbprint: null },
      },
    });
    await root.registry.createDevice({
      deviceId: "by-ca",
      deviceScope: edge1.deviceScope,
      authentication: { type: "certificateAuthority" },
    });
    await root.registry.createDevice({
      deviceId: "off",
      deviceScope: edge1.deviceScope,
      status: "disabled",
      statusReason: "stolen",
    });
    const edge2 = await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [edge1.deviceScope as string],
    });
    await root.registry.createModule({ deviceId: "edge2", moduleId: "filter", managedBy: "IotEdge" });
    // Past one page of 500 in edge2's own scope: the root's continuationLink goes back in the body.
    for (let i = 0; i < 500; i++)
      await root.registry.createDevice({ deviceId: `leaf-${i}`, deviceScope: edge2.deviceScope });
    const edge = await edgeOf(parent);
    expect(await edge.sync.sync(), JSON.stringify(edge.reasons())).toBe(true);
    expect(edge.sync.form).toBe("nested");
    const synced = edge.log.events.find((e) => e.event === "scope-synced")?.fields;
    expect(synced).toMatchObject({ form: "nested", devices: 505, modules: 5, skipped: 0 });
    expect(edge.registry.listDevices().sort(byId)).toEqual(root.registry.listDevices().sort(byId));
    expect(edge.registry.getModule("edge2", "filter")).toEqual(root.registry.getModule("edge2", "filter"));
  });

  it("walks root <- edge1 <- edge2 <- edge3: edge1 from the root, edge2 from edge1's cache, each getting exactly its subtree", async () => {
    const root = await startRoot(await tempDir(), { allowNesting: true });
    const edge1Parent = await edgeIdentity(root, "edge1");
    const r = root.registry;
    const scopeOf = (id: string) => r.getDevice(id)?.deviceScope as string;
    await r.createDevice({ deviceId: "leaf1", deviceScope: scopeOf("edge1") });
    const e2 = await r.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [scopeOf("edge1")],
    });
    await r.createModule({ deviceId: "edge2", moduleId: "mod2" });
    await r.createDevice({ deviceId: "leaf2", deviceScope: scopeOf("edge2") });
    await r.createModule({ deviceId: "leaf2", moduleId: "leafmod" });
    await r.createDevice({
      deviceId: "edge3",
      capabilities: { iotEdge: true },
      parentScopes: [scopeOf("edge2")],
    });
    await r.createModule({ deviceId: "edge3", moduleId: "mod3" });
    await r.createDevice({ deviceId: "leaf3", deviceScope: scopeOf("edge3") });
    const subtree = (ids: string[]) => ({
      devices: ids.map((id) => r.getDevice(id)).sort(byId as never),
      modules: ids.flatMap((id) => r.listModules(id)),
    });

    const edge1 = await startEdge(await tempDir(), edge1Parent, { allowNesting: true });
    await synced(edge1);
    expect(edge1.registry.listDevices().sort(byId)).toEqual(
      subtree(["edge1", "leaf1", "edge2", "leaf2", "edge3", "leaf3"]).devices,
    );
    // edge2 walks through edge1, which answers from the scope it synced.
    const edge2 = await childEdgeOf(edge1, "edge2", e2.authentication.symmetricKey?.primaryKey ?? "");
    expect(await edge2.sync.sync(), JSON.stringify(edge2.reasons())).toBe(true);
    const want = subtree(["edge2", "leaf2", "edge3", "leaf3"]);
    expect(edge2.registry.listDevices().sort(byId)).toEqual(want.devices);
    expect(
      ["edge2", "leaf2", "edge3", "leaf3"].flatMap((id) => edge2.registry.listModules(id)).sort(byId),
    ).toEqual(want.modules.sort(byId));
    expect(edge2.log.events.find((e) => e.event === "scope-synced")?.fields).toMatchObject({
      form: "nested",
      skipped: 0,
    });
  });
});

describe("scope sync: the wire form", () => {
  it("POSTs Microsoft's nested form, continues in the body, and walks each child edge with its chain", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    parent.answer = (_n, call, res) => {
      const chain = call.body?.authChain;
      if (chain === "edge1" && call.body?.continuationLink === undefined)
        return json(res, {
          devices: [edgeDevice("edge1"), edgeDevice("edge2", "edge1"), device("leaf1")],
          modules: [module("edge1", "$edgeHub")],
          continuationLink: "page-2-of-edge1",
        });
      if (chain === "edge1")
        return json(res, { devices: [device("leaf1b")], modules: null, continuationLink: null });
      if (chain === "edge2;edge1")
        return json(res, {
          devices: [edgeDevice("edge2", "edge1"), device("leaf2")],
          modules: [module("edge2", "$edgeHub")],
          continuationLink: null,
        });
      res.writeHead(400).end();
    };
    expect(await edge.sync.sync(), JSON.stringify([edge.reasons(), parent.refused])).toBe(true);
    expect(parent.refused).toEqual([]);
    const path = `${nestedScopePath("edge1")}?api-version=2020-06-30-preview`;
    expect(path.replace("%24", "$")).toBe((scopeForm("nested.post.path") as string).replace(/^POST /, ""));
    // Microsoft's queue order: edge1's first page, then its continuation and edge2 (both queued by it).
    expect(parent.calls).toEqual([
      { method: "POST", url: path, body: { pageSize: 500, authChain: "edge1" } },
      {
        method: "POST",
        url: path,
        body: { pageSize: 500, continuationLink: "page-2-of-edge1", authChain: "edge1" },
      },
      { method: "POST", url: path, body: { pageSize: 500, authChain: "edge2;edge1" } },
    ]);
    expect(edge.ids()).toEqual(["edge1", "edge2", "leaf1", "leaf1b", "leaf2"]);
    expect(edge.registry.listModules("edge2").map((m) => m.moduleId)).toEqual(["$edgeHub"]);
    // edge2 came twice (edge1's child, its own target): expected, not a skip.
    expect(edge.log.events.find((e) => e.event === "scope-synced")?.fields.skipped).toBe(0);
  });

  for (const status of [404, 405] as const)
    it(`falls back to the legacy GET when the parent answers the POST route ${status}, and stays with it`, async () => {
      const parent = await RawHttpsParent.start();
      parent.nestedRoute = status;
      const edge = await edgeOf(parent);
      const next = `${scopePath("edge1")}?deviceCount=500&continuationToken=Mg`;
      parent.answer = (n, _call, res) =>
        json(res, {
          devices: n % 2 === 0 ? [edgeDevice("edge1"), edgeDevice("edge2", "edge1")] : [device("leaf2")],
          modules: [],
          continuationLink: n % 2 === 0 ? next : null,
        });
      expect(await edge.sync.sync(), JSON.stringify(edge.reasons())).toBe(true);
      expect(edge.sync.form).toBe("legacy");
      const first = (scopeForm("legacy.get") as string)
        .replace(/^GET /, "")
        .replace("deviceCount=100", "deviceCount=500");
      expect(parent.calls.map((c) => `${c.method} ${c.url}`)).toEqual([`GET ${first}`, `GET ${next}`]);
      expect(edge.ids()).toEqual(["edge1", "edge2", "leaf2"]);
      // The next sync asks the legacy call straight away: one route 404 was enough.
      parent.nestedRoute = "served";
      expect(await edge.sync.sync()).toBe(true);
      expect(parent.calls.map((c) => c.method)).toEqual(["GET", "GET", "GET", "GET"]);
    });

  it("does not fall back once the parent has answered the POST: a 404 then fails the sync", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    parent.answer = (_n, _call, res) =>
      json(res, { devices: [edgeDevice("edge1"), device("leaf")], modules: [] });
    expect(await edge.sync.sync()).toBe(true);
    parent.nestedRoute = 404;
    expect(await edge.sync.sync()).toBe(false);
    expect(edge.sync.form).toBe("nested");
    expect(parent.calls.map((c) => c.method)).toEqual(["POST"]);
    expect(edge.ids()).toEqual(["edge1", "leaf"]);
  });

  it("retries 429 and 503 twice with Microsoft's policy, then gives up and applies nothing", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    const statuses = [429, 503];
    parent.answer = (n, _call, res) =>
      n < statuses.length
        ? void res.writeHead(statuses[n] as number).end()
        : json(res, { devices: [edgeDevice("edge1")], modules: [] });
    expect(await edge.sync.sync(), JSON.stringify(edge.reasons())).toBe(true);
    expect(parent.calls).toHaveLength(3);
    expect(edge.log.events.filter((e) => e.event === "scope-call-retry")).toHaveLength(SCOPE_RETRIES);

    parent.calls.length = 0;
    parent.answer = (_n, _call, res) => void res.writeHead(503).end();
    expect(await edge.sync.sync()).toBe(false);
    expect(parent.calls).toHaveLength(1 + SCOPE_RETRIES);
    expect(edge.ids()).toEqual(["edge1"]);
  });

  for (const status of [400, 401, 403, 406])
    it(`does not retry ${status}, and keeps the cached scope`, async () => {
      const parent = await RawHttpsParent.start();
      const edge = await edgeOf(parent);
      parent.answer = (n, _call, res) =>
        n === 0
          ? json(res, { devices: [edgeDevice("edge1")], modules: [] })
          : void res.writeHead(status).end();
      expect(await edge.sync.sync()).toBe(true);
      expect(await edge.sync.sync()).toBe(false);
      expect(parent.calls).toHaveLength(2);
      expect(edge.sync.form).toBe("nested");
      expect(edge.ids()).toEqual(["edge1"]);
      expect(edge.reasons()).toEqual([expect.stringContaining(`answered ${status}`)]);
    });

  it("a token the parent refuses (401) is not retried", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    // The parent now holds another key for edge1: its own check refuses the token, once.
    parent.key = Buffer.alloc(32, 9).toString("base64");
    expect(await edge.sync.sync()).toBe(false);
    expect(parent.refused).toEqual([expect.stringMatching(/^bad signature/)]);
    expect(edge.reasons()).toEqual([expect.stringContaining("answered 401")]);
  });

  it("waits as Microsoft's ExponentialBackoff(2, 1 s, 10 s, 4 s): 1 s, then 4.2-5.8 s, never over 10 s", () => {
    expect(scopeBackoffMs(0, () => 0)).toBe(1000);
    expect(scopeBackoffMs(0, () => 0.999)).toBe(1000);
    expect(scopeBackoffMs(1, () => 0)).toBe(4200);
    expect(scopeBackoffMs(1, () => 0.999_999)).toBe(5799);
    expect(scopeBackoffMs(5, () => 0.5)).toBe(10_000);
  });
});
