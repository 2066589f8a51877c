/**
 * The root's scope routes as a strict parent: the nested POST answers one target edge's
 * direct scope to its actor and refuses a wrong actor (401), a broken or foreign chain and
 * a body off NestedScopeRequest (400, IoT Hub's error JSON); the legacy GET keeps answering
 * the whole subtree. Real root hub, real HTTPS, edge SAS tokens.
 */
import { beforeEach, describe, expect, it } from "vitest";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";
import { nestedScopePath, scopePath } from "../../ts/service/scope.js";
import { inScopeTargetPath, ORIGIN_EDGE_HEADER, onBehalfOfPath } from "../../ts/service/scope-identity.js";
import { startRoot } from "../helpers/edge.js";
import { tempDir } from "../helpers/fixtures.js";
import { call, type Reply } from "../helpers/service.js";

interface Page {
  devices: { deviceId: string }[];
  modules: { deviceId: string; moduleId: string }[];
  continuationLink: string | null;
}

let root: EdgeHub;
/** The `$edgeHub` key of each edge (the scope calls' credential), and each device's own key. */
const keys: Record<string, string> = {};
const deviceKeys: Record<string, string> = {};

/**
 * root: edge1 (module m1) <- leaf1 (module lm), edge2 (module m2) <- leaf2, edge3 <- edge4;
 * edge3 disabled; edge5 elsewhere. Every edge has `$edgeAgent` and `$edgeHub`, as on IoT Hub.
 * A fresh root per test: the hub helpers stop every hub after each test.
 */
beforeEach(async () => {
  root = await startRoot(await tempDir(), { allowNesting: true });
  const r = root.registry;
  const edge = async (deviceId: string, parent?: string) => {
    const d = await r.createDevice({
      deviceId,
      capabilities: { iotEdge: true },
      parentScopes: parent ? [r.getDevice(parent)?.deviceScope as string] : [],
    });
    deviceKeys[deviceId] = d.authentication.symmetricKey?.primaryKey ?? "";
    keys[deviceId] = r.getModule(deviceId, "$edgeHub")?.authentication.symmetricKey?.primaryKey ?? "";
  };
  await edge("edge1");
  await r.createModule({ deviceId: "edge1", moduleId: "m1" });
  const leaf1 = await r.createDevice({ deviceId: "leaf1", deviceScope: r.getDevice("edge1")?.deviceScope });
  deviceKeys.leaf1 = leaf1.authentication.symmetricKey?.primaryKey ?? "";
  await r.createModule({ deviceId: "leaf1", moduleId: "lm" });
  await edge("edge2", "edge1");
  await r.createModule({ deviceId: "edge2", moduleId: "m2" });
  await r.createDevice({ deviceId: "leaf2", deviceScope: r.getDevice("edge2")?.deviceScope });
  await edge("edge3", "edge1");
  await edge("edge4", "edge3");
  await r.updateDevice({ deviceId: "edge3", status: "disabled" });
  await edge("edge5");
});

/**
 * A `$edgeHub` token of edge `deviceId` (signed with `key`, that module's own by default); a
 * device that is not an edge signs with its own key.
 */
function tokenOf(deviceId: string, key = keys[deviceId]): Record<string, string> {
  if (key === undefined) return deviceTokenOf(deviceId);
  const resource = `localhost/devices/${deviceId}/modules/$edgeHub`;
  return { authorization: createSasToken(resource, key, Math.floor(Date.now() / 1000) + 600) };
}

/** A token of the device `deviceId` itself, signed with its own key. */
function deviceTokenOf(deviceId: string): Record<string, string> {
  const key = deviceKeys[deviceId] as string;
  return {
    authorization: createSasToken(`localhost/devices/${deviceId}`, key, Math.floor(Date.now() / 1000) + 600),
  };
}

function post(actor: string, body: unknown, as = actor): Promise<Reply> {
  return call(root, "POST", nestedScopePath(actor), body, tokenOf(as));
}

const ids = (p: Page) => ({
  devices: p.devices.map((d) => d.deviceId),
  modules: p.modules.map((m) => `${m.deviceId}/${m.moduleId}`).sort(),
});

describe("the nested scope route", () => {
  it("answers the target edge, its modules, its children and their modules, not a child edge's", async () => {
    const own = await post("edge1", { pageSize: 100, authChain: "edge1" });
    expect(own.status).toBe(200);
    expect(ids(own.body as Page)).toEqual({
      devices: ["edge1", "edge2", "edge3", "leaf1"],
      modules: ["edge1/$edgeAgent", "edge1/$edgeHub", "edge1/m1", "leaf1/lm"],
    });
    expect((own.body as Page).continuationLink).toBeNull();
    const child = await post("edge1", { pageSize: 0, authChain: "edge2;edge1" });
    expect(child.status).toBe(200);
    expect(ids(child.body as Page)).toEqual({
      devices: ["edge2", "leaf2"],
      modules: ["edge2/$edgeAgent", "edge2/$edgeHub", "edge2/m2"],
    });
  });

  it("pages by pageSize with an opaque link sent back in the body, and refuses a forged or foreign one", async () => {
    const seen: string[] = [];
    let link: string | null | undefined;
    do {
      const r = await post("edge1", {
        pageSize: 1,
        ...(link ? { continuationLink: link } : {}),
        authChain: "edge1",
      });
      expect(r.status).toBe(200);
      seen.push(...(r.body as Page).devices.map((d) => d.deviceId));
      link = (r.body as Page).continuationLink;
      if (link) expect(link).toMatch(/^[A-Za-z0-9_-]+$/);
    } while (link);
    expect(seen).toEqual(["edge1", "edge2", "edge3", "leaf1"]);
    const first = (await post("edge1", { pageSize: 1, authChain: "edge1" })).body as Page;
    for (const forged of [
      Buffer.from("99/edge1").toString("base64url"),
      Buffer.from("-1/edge1").toString("base64url"),
      Buffer.from("1/edge5").toString("base64url"),
      "not-a-token",
      "x".repeat(600),
    ]) {
      const r = await post("edge1", { pageSize: 1, continuationLink: forged, authChain: "edge1" });
      expect(r.status, forged.slice(0, 20)).toBe(400);
    }
    // edge1's link does not continue edge2's scope.
    const foreign = await post("edge1", {
      pageSize: 1,
      continuationLink: first.continuationLink,
      authChain: "edge2;edge1",
    });
    expect(foreign.status).toBe(400);
  });

  it("refuses a caller that is not the actor of the path with 401", async () => {
    for (const r of [
      await post("edge1", { pageSize: 1, authChain: "edge1" }, "edge2"),
      await post("edge1", { pageSize: 1, authChain: "edge1" }, "leaf1"),
      await call(
        root,
        "POST",
        nestedScopePath("edge1"),
        { pageSize: 1, authChain: "edge1" },
        { authorization: "" },
      ),
      await call(
        root,
        "POST",
        nestedScopePath("edge1"),
        { pageSize: 1, authChain: "edge1" },
        tokenOf("edge1", keys.edge2),
      ),
      // The edge device's own token: Microsoft's edge hub signs the call with `$edgeHub`'s.
      await call(
        root,
        "POST",
        nestedScopePath("edge1"),
        { pageSize: 1, authChain: "edge1" },
        deviceTokenOf("edge1"),
      ),
    ]) {
      expect(r.status).toBe(401);
      expect((r.body as { Message: string }).Message).toBe("ErrorCode:IotHubUnauthorizedAccess;Unauthorized");
    }
  });

  it("refuses a chain that does not lead from the target edge up to the actor, with 400", async () => {
    for (const [chain, reason] of [
      ["edge2", "does not end with the caller"],
      ["edge1;edge2", "does not end with the caller"],
      ["edge5;edge1", "not a child of the next"],
      ["leaf1;edge1", "not an enabled edge device"],
      ["edge4;edge3;edge1", "not an enabled edge device"],
      ["ghost;edge1", "not an enabled edge device"],
      ["bad/id;edge1", "not an enabled edge device"],
      ["edge1;edge1", "twice"],
      ["a;b;c;d;e;edge1", "more than 5"],
      ["edge2;;edge1", "not an enabled edge device"],
    ]) {
      const r = await post("edge1", { pageSize: 10, authChain: chain });
      expect(r.status, chain).toBe(400);
      expect((r.body as { Message: string }).Message, chain).toMatch(/^ErrorCode:ArgumentInvalid;.*/);
      expect((r.body as { Message: string }).Message, chain).toContain(reason);
    }
  });

  it("refuses a body off NestedScopeRequest with 400 and IoT Hub's error JSON", async () => {
    for (const body of [
      Buffer.from("{not json"),
      [],
      "edge1",
      { pageSize: 1 },
      { authChain: "edge1" },
      { pageSize: 1, authChain: "" },
      { pageSize: 1, authChain: 5 },
      { pageSize: 1001, authChain: "edge1" },
      { pageSize: -1, authChain: "edge1" },
      { pageSize: 1.5, authChain: "edge1" },
      { pageSize: "5", authChain: "edge1" },
      { pageSize: 1, authChain: "edge1", continuationLink: 5 },
      { pageSize: 1, authChain: "edge1", deviceCount: 5 },
      JSON.parse('{"pageSize":1,"authChain":"edge1","__proto__":{"x":1}}'),
    ]) {
      const r = await post("edge1", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect((r.body as { Message: string }).Message).toMatch(/^ErrorCode:ArgumentInvalid;/);
    }
  });
});

describe("the legacy scope route", () => {
  it("still answers the edge's whole subtree, modules included", async () => {
    const r = await call(
      root,
      "GET",
      `${scopePath("edge1")}?deviceCount=100&continuationToken=`,
      undefined,
      tokenOf("edge1"),
    );
    expect(r.status).toBe(200);
    expect(ids(r.body as Page)).toEqual({
      devices: ["edge1", "edge2", "edge3", "edge4", "leaf1", "leaf2"],
      modules: [
        "edge1/$edgeAgent",
        "edge1/$edgeHub",
        "edge1/m1",
        "edge2/$edgeAgent",
        "edge2/$edgeHub",
        "edge2/m2",
        "edge3/$edgeAgent",
        "edge3/$edgeHub",
        "edge4/$edgeAgent",
        "edge4/$edgeHub",
        "leaf1/lm",
      ],
    });
  });
});

describe("one identity on behalf of an edge", () => {
  const one = (actor: string, body: unknown, headers: Record<string, string> = tokenOf(actor)) =>
    call(root, "POST", `${onBehalfOfPath(actor)}?api-version=2020-06-30-preview`, body, headers);
  const asked = async (actor: string, body: unknown, origin?: string) => {
    const r = await one(actor, body, {
      ...tokenOf(actor),
      ...(origin ? { [ORIGIN_EDGE_HEADER]: origin } : {}),
    });
    expect(r.status, JSON.stringify(body)).toBe(200);
    expect((r.body as Page).continuationLink).toBeNull();
    return ids(r.body as Page);
  };

  it("answers the target below the origin edge (a module with its device), and nothing for one outside it", async () => {
    // The edge's own login: origin = actor, chain = the actor.
    expect(await asked("edge1", { targetDeviceId: "leaf1", authChain: "edge1" }, "edge1")).toEqual({
      devices: ["leaf1"],
      modules: [],
    });
    expect(
      await asked("edge1", { targetDeviceId: "leaf1", targetModuleId: "lm", authChain: "edge1" }),
    ).toEqual({
      devices: ["leaf1"],
      modules: ["leaf1/lm"],
    });
    // Forwarded for a child edge: origin edge2, its chain `edge2;edge1`.
    expect(await asked("edge1", { targetDeviceId: "leaf2", authChain: "edge2;edge1" }, "edge2")).toEqual({
      devices: ["leaf2"],
      modules: [],
    });
    expect(
      await asked("edge1", { targetDeviceId: "edge2", targetModuleId: "$edgeHub", authChain: "edge2;edge1" }),
    ).toEqual({ devices: ["edge2"], modules: ["edge2/$edgeHub"] });
    // Not below the origin (leaf1 is edge1's, not edge2's), elsewhere, or unknown: nothing.
    const none = { devices: [], modules: [] };
    expect(await asked("edge1", { targetDeviceId: "leaf1", authChain: "edge2;edge1" })).toEqual(none);
    expect(await asked("edge1", { targetDeviceId: "edge5", authChain: "edge1" })).toEqual(none);
    expect(await asked("edge1", { targetDeviceId: "ghost", authChain: "edge1" })).toEqual(none);
    expect(
      await asked("edge1", { targetDeviceId: "leaf1", targetModuleId: "ghost", authChain: "edge1" }),
    ).toEqual(none);
    expect(
      await asked("edge1", { targetDeviceId: "edge1", targetModuleId: null, authChain: "edge1" }),
    ).toEqual({
      devices: ["edge1"],
      modules: [],
    });
  });

  it("refuses a caller that is not the actor's $edgeHub with 401: another edge, the device key, a leaf", async () => {
    const body = { targetDeviceId: "leaf1", authChain: "edge1" };
    for (const headers of [
      tokenOf("edge2"),
      tokenOf("edge1", keys.edge2),
      deviceTokenOf("edge1"),
      deviceTokenOf("leaf1"),
    ]) {
      const r = await one("edge1", body, headers);
      expect(r.status).toBe(401);
      expect((r.body as { Message: string }).Message).toBe("ErrorCode:IotHubUnauthorizedAccess;Unauthorized");
    }
  });

  it("refuses a chain that does not lead from the origin edge up to the actor, an origin header off the chain, and a body off IdentityOnBehalfOfRequest, with 400", async () => {
    for (const [body, origin] of [
      [{ targetDeviceId: "leaf2", authChain: "edge2" }, undefined],
      [{ targetDeviceId: "leaf2", authChain: "edge1;edge2" }, undefined],
      [{ targetDeviceId: "leaf1", authChain: "leaf1;edge1" }, undefined],
      [{ targetDeviceId: "edge4", authChain: "edge4;edge3;edge1" }, undefined],
      [{ targetDeviceId: "x", authChain: "edge5;edge1" }, undefined],
      [{ targetDeviceId: "leaf2", authChain: "edge2;edge1" }, "edge1"],
      [{ targetDeviceId: "leaf1", authChain: "edge1" }, "edge2"],
      [{ authChain: "edge1" }, undefined],
      [{ targetDeviceId: "a/b", authChain: "edge1" }, undefined],
      [{ targetDeviceId: "leaf1", targetModuleId: 5, authChain: "edge1" }, undefined],
      [{ targetDeviceId: "leaf1" }, undefined],
      [{ targetDeviceId: "leaf1", authChain: "edge1", pageSize: 1 }, undefined],
      [JSON.parse('{"targetDeviceId":"leaf1","authChain":"edge1","__proto__":{"x":1}}'), undefined],
      [[], undefined],
      [Buffer.from("{not json"), undefined],
    ] as const) {
      const r = await one("edge1", body, {
        ...tokenOf("edge1"),
        ...(origin ? { [ORIGIN_EDGE_HEADER]: origin } : {}),
      });
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect((r.body as { Message: string }).Message).toMatch(/^ErrorCode:ArgumentInvalid;/);
    }
  });

  it("the legacy single read answers a target of the edge's whole subtree, nothing outside it, 400 without a target", async () => {
    const get = (edge: string, query: string, headers = tokenOf(edge)) =>
      call(
        root,
        "GET",
        `${inScopeTargetPath(edge)}?${query}&api-version=2018-08-30-preview`,
        undefined,
        headers,
      );
    const deep = await get("edge1", "targetDeviceId=leaf2&targetModuleId=");
    expect(deep.status).toBe(200);
    expect(ids(deep.body as Page)).toEqual({ devices: ["leaf2"], modules: [] });
    const mod = await get("edge1", "targetDeviceId=edge2&targetModuleId=m2");
    expect(ids(mod.body as Page)).toEqual({ devices: ["edge2"], modules: ["edge2/m2"] });
    const foreign = await get("edge5", "targetDeviceId=leaf1&targetModuleId=");
    expect(ids(foreign.body as Page)).toEqual({ devices: [], modules: [] });
    expect((await get("edge1", "targetModuleId=")).status).toBe(400);
    expect((await get("edge1", "targetDeviceId=leaf1", deviceTokenOf("edge1"))).status).toBe(401);
  });
});
