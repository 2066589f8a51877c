/**
 * The module identity API by a device's own credential (docs/upstream-forms.md §7, IS
 * `aziot-hub-client-async/src/lib.rs#Client::get_module`): a device reads its own modules
 * with their keys, nothing else; the service policy keeps reading everything; an edge hub
 * answers its child edges from its scope cache, with its parent away.
 */
import https from "node:https";
import { describe, expect, it } from "vitest";
import type { Module } from "../../ts/auth/registry.js";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";
import { type Pem, selfSigned } from "../helpers/certs.js";
import { edgeIdentity, startEdge, startRoot, synced } from "../helpers/edge.js";
import { tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { call } from "../helpers/service.js";

const PATH = "/devices/edge1/modules/%24edgeHub?api-version=2017-11-08-preview";

/** A SAS token of `who` (`device` or `device/module`) for the hub named `host`, signed with `key`. */
function tokenOf(host: string, who: string, key: string): string {
  const [d, m] = who.split("/");
  const resource = m === undefined ? `${host}/devices/${d}` : `${host}/devices/${d}/modules/${m}`;
  return createSasToken(resource, key, Math.floor(Date.now() / 1000) + 600);
}

const keyOf = (hub: EdgeHub, who: string) => {
  const [d = "", m] = who.split("/");
  const auth =
    m === undefined
      ? hub.registry.getDevice(d)?.authentication
      : hub.registry.getModule(d, m)?.authentication;
  return auth?.symmetricKey?.primaryKey ?? "";
};

describe("module identity API by the device's own credential", () => {
  it("answers the device's own modules with their keys; 401 to another device or a module; 404 for an unknown module", async () => {
    const root = await startRoot(await tempDir());
    await root.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    await root.registry.createDevice({ deviceId: "dev2" });
    const as = (who: string, path = PATH) =>
      call(root, "GET", path, undefined, { authorization: tokenOf("localhost", who, keyOf(root, who)) });

    const own = await as("edge1");
    expect(own.status).toBe(200);
    expect(own.body).toMatchObject({
      deviceId: "edge1",
      moduleId: "$edgeHub",
      authentication: {
        type: "sas",
        symmetricKey: root.registry.getModule("edge1", "$edgeHub")?.authentication.symmetricKey,
      },
    });
    const list = await as("edge1", "/devices/edge1/modules");
    expect(list.status).toBe(200);
    expect((list.body as { moduleId: string }[]).map((m) => m.moduleId).sort()).toEqual([
      "$edgeAgent",
      "$edgeHub",
    ]);

    expect((await as("dev2")).status).toBe(401);
    expect((await as("edge1/$edgeHub")).status).toBe(401);
    expect((await as("edge1/$edgeAgent", "/devices/edge1/modules")).status).toBe(401);
    // A token of edge1 signed with another key.
    const forged = tokenOf("localhost", "edge1", keyOf(root, "dev2"));
    expect((await call(root, "GET", PATH, undefined, { authorization: forged })).status).toBe(401);
    expect((await as("edge1", "/devices/edge1/modules/nope")).status).toBe(404);
    // A write of `$edgeHub` by the device: IoT Hub's module, refused with a clear 403.
    const put = await call(
      root,
      "PUT",
      PATH,
      { moduleId: "$edgeHub" },
      {
        authorization: tokenOf("localhost", "edge1", keyOf(root, "edge1")),
      },
    );
    expect(put.status).toBe(403);
    expect(JSON.stringify(put.body)).toMatch(/\$edgeHub is managed by the hub/);

    // The service policy reads it as before (the helper signs as iothubowner).
    const byPolicy = await call(root, "GET", PATH);
    expect(byPolicy.status).toBe(200);
    expect(byPolicy.body).toEqual(own.body);
  });

  it("an edge hub answers a child edge's own $edgeHub from its scope cache, with its parent away", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [root.registry.getDevice("edge1")?.deviceScope as string],
    });
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const want = root.registry.getModule("edge2", "$edgeHub")?.authentication.symmetricKey;
    const edge2Key = keyOf(root, "edge2");
    await stopHub(root);
    // Tokens name the hub the child edge's identity lives on: the root's name.
    const path = "/devices/edge2/modules/%24edgeHub?api-version=2017-11-08-preview";
    const answer = await call(edge, "GET", path, undefined, {
      authorization: tokenOf("localhost", "edge2", edge2Key),
    });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      deviceId: "edge2",
      moduleId: "$edgeHub",
      authentication: { symmetricKey: want },
    });
    // Not edge1's modules with edge2's credential.
    const other = await call(edge, "GET", PATH, undefined, {
      authorization: tokenOf("localhost", "edge2", edge2Key),
    });
    expect(other.status).toBe(401);
  });

  it("a device creates, updates (If-Match), lists and deletes its own modules as the identity service does; hostile callers and bodies get a clear 4xx", async () => {
    const root = await startRoot(await tempDir());
    await root.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    await root.registry.createDevice({ deviceId: "dev2" });
    const mod = "/devices/edge1/modules/mod3?api-version=2017-11-08-preview";
    const as = (who: string, method: string, path: string, body?: unknown, headers = {}) =>
      call(root, method, path, body, {
        authorization: tokenOf("localhost", who, keyOf(root, who)),
        ...headers,
      });
    // The identity service's create_module body: hub::Module with generationId null.
    const spec = {
      moduleId: "mod3",
      managedBy: "iotEdge",
      deviceId: "edge1",
      generationId: null,
      authentication: { type: "sas" },
    };
    const created = await as("edge1", "PUT", mod, spec);
    expect(created.status).toBe(200);
    const m = root.registry.getModule("edge1", "mod3") as Module;
    expect(created.body).toMatchObject({
      deviceId: "edge1",
      moduleId: "mod3",
      managedBy: "iotEdge",
      authentication: { type: "sas", symmetricKey: m.authentication.symmetricKey },
    });
    // Replacing needs If-Match, as IoT Hub: none 409, a stale etag 412, `*` (update_module) 200.
    expect((await as("edge1", "PUT", mod, spec)).status).toBe(409);
    expect((await as("edge1", "PUT", mod, spec, { "if-match": '"stale"' })).status).toBe(412);
    const updated = await as("edge1", "PUT", mod, { ...spec, managedBy: "me" }, { "if-match": "*" });
    expect(updated.status).toBe(200);
    expect(root.registry.getModule("edge1", "mod3")?.managedBy).toBe("me");
    const list = await as("edge1", "GET", "/devices/edge1/modules?api-version=2017-11-08-preview");
    expect((list.body as { moduleId: string }[]).map((x) => x.moduleId).sort()).toEqual([
      "$edgeAgent",
      "$edgeHub",
      "mod3",
    ]);

    // Hostile: another device, a module of the device, IoT Hub's modules, bodies that do not fit.
    expect((await as("dev2", "PUT", "/devices/edge1/modules/x", { moduleId: "x" })).status).toBe(401);
    expect((await as("dev2", "DELETE", mod, undefined, { "if-match": "*" })).status).toBe(401);
    expect((await as("edge1/$edgeAgent", "PUT", "/devices/edge1/modules/x", {})).status).toBe(401);
    // The device's own $edgeHub is no ancestor of its own device: not on its behalf.
    expect((await as("edge1/$edgeHub", "PUT", "/devices/edge1/modules/x", {})).status).toBe(401);
    for (const reserved of ["$edgeAgent", "$edgeHub"]) {
      const path = `/devices/edge1/modules/${encodeURIComponent(reserved)}`;
      expect((await as("edge1", "PUT", path, {}, { "if-match": "*" })).status).toBe(403);
      expect((await as("edge1", "DELETE", path, undefined, { "if-match": "*" })).status).toBe(403);
    }
    expect((await as("edge1", "PUT", "/devices/edge1/modules/y", { deviceId: "dev2" })).status).toBe(400);
    expect((await as("edge1", "PUT", "/devices/edge1/modules/y", { moduleId: "z" })).status).toBe(400);
    expect((await as("edge1", "PUT", "/devices/edge1/modules/y", { owner: "me" })).status).toBe(400);
    const proto = Buffer.from('{"__proto__":{"polluted":true}}');
    expect((await as("edge1", "PUT", "/devices/edge1/modules/y", proto)).status).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await as("edge1", "PUT", "/devices/edge1/modules/y", [1])).status).toBe(400);
    expect((await as("edge1", "PUT", "/devices/edge1/modules/y", { managedBy: 7 })).status).toBe(400);
    expect(
      (await as("edge1", "PUT", "/devices/edge1/modules/y", { authentication: { type: "magic" } })).status,
    ).toBe(400);
    expect(root.registry.getModule("edge1", "y")).toBeUndefined();

    // The service policy still writes IoT Hub's modules.
    const byPolicy = await call(root, "PUT", "/devices/edge1/modules/%24edgeAgent", {}, { "if-match": "*" });
    expect(byPolicy.status).toBe(200);

    expect((await as("edge1", "DELETE", mod, undefined, { "if-match": "*" })).status).toBe(204);
    expect(root.registry.getModule("edge1", "mod3")).toBeUndefined();
    expect((await as("edge1", "DELETE", mod, undefined, { "if-match": "*" })).status).toBe(404);
  });

  it("the root takes an edge's $edgeHub token for the modules of devices below that edge only: not its own, not a device key, not a sibling's", async () => {
    const root = await startRoot(await tempDir());
    await root.registry.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    const scope1 = root.registry.getDevice("edge1")?.deviceScope as string;
    await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [scope1],
    });
    const scope2 = root.registry.getDevice("edge2")?.deviceScope as string;
    await root.registry.createDevice({
      deviceId: "edge3",
      capabilities: { iotEdge: true },
      parentScopes: [scope2],
    });
    await root.registry.createDevice({ deviceId: "other", capabilities: { iotEdge: true } });
    const put = async (who: string, deviceId: string, moduleId: string) =>
      (
        await call(
          root,
          "PUT",
          `/devices/${deviceId}/modules/${moduleId}?api-version=2017-11-08-preview`,
          {},
          {
            authorization: tokenOf("localhost", who, keyOf(root, who)),
          },
        )
      ).status;
    // On behalf of a child edge, and of a grandchild (forwarded by two edges).
    expect(await put("edge1/$edgeHub", "edge2", "a")).toBe(200);
    expect(await put("edge1/$edgeHub", "edge3", "b")).toBe(200);
    expect(await put("edge2/$edgeHub", "edge3", "c")).toBe(200);
    // Not its own device's, not upward, not a sibling tree's, not with the device key.
    expect(await put("edge1/$edgeHub", "edge1", "d")).toBe(401);
    expect(await put("edge2/$edgeHub", "edge1", "e")).toBe(401);
    expect(await put("edge1/$edgeHub", "other", "f")).toBe(401);
    expect(await put("edge1", "edge2", "g")).toBe(401);
    expect(await put("edge1/$edgeAgent", "edge2", "h")).toBe(401);
    expect(
      root.registry
        .listModules("edge2")
        .map((m) => m.moduleId)
        .sort(),
    ).toEqual(["$edgeAgent", "$edgeHub", "a"]);
  });

  it("an edge hub forwards a child edge's module writes to the root with its $edgeHub token, checks them first, answers reads from its cache, and says 503 while the root is away", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const scope1 = root.registry.getDevice("edge1")?.deviceScope as string;
    await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [scope1],
    });
    await root.registry.createDevice({ deviceId: "leaf", deviceScope: scope1 });
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const as = (who: string, method: string, path: string, body?: unknown, headers = {}) =>
      call(edge, method, `${path}?api-version=2017-11-08-preview`, body, {
        authorization: tokenOf("localhost", who, keyOf(root, who)),
        ...headers,
      });
    const created = await as("edge2", "PUT", "/devices/edge2/modules/mod9", {
      moduleId: "mod9",
      deviceId: "edge2",
      authentication: { type: "sas" },
    });
    expect(created.status).toBe(200);
    const atRoot = root.registry.getModule("edge2", "mod9") as Module;
    expect(atRoot).toBeDefined();
    expect(created.body).toMatchObject({ moduleId: "mod9", etag: atRoot.etag });
    // The edge's cache has it: a read answers the root's keys.
    const read = await as("edge2", "GET", "/devices/edge2/modules/mod9");
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ authentication: { symmetricKey: atRoot.authentication.symmetricKey } });
    // Update with If-Match *, through the edge.
    expect(
      (await as("edge2", "PUT", "/devices/edge2/modules/mod9", { managedBy: "x" }, { "if-match": "*" }))
        .status,
    ).toBe(200);
    expect(root.registry.getModule("edge2", "mod9")?.managedBy).toBe("x");
    // The root's refusal comes back as it was: no If-Match on an existing module.
    expect((await as("edge2", "PUT", "/devices/edge2/modules/mod9", {})).status).toBe(409);

    // Checked here first: nothing of these reaches the root.
    expect((await as("leaf", "PUT", "/devices/edge2/modules/evil", {})).status).toBe(401);
    expect(
      (await as("edge2", "PUT", "/devices/edge2/modules/%24edgeHub", {}, { "if-match": "*" })).status,
    ).toBe(403);
    expect((await as("edge2", "PUT", "/devices/edge2/modules/bad", { deviceId: "leaf" })).status).toBe(400);
    expect(root.registry.getModule("edge2", "evil")).toBeUndefined();
    expect(root.registry.getModule("edge2", "bad")).toBeUndefined();

    expect(
      (await as("edge2", "DELETE", "/devices/edge2/modules/mod9", undefined, { "if-match": "*" })).status,
    ).toBe(204);
    expect(root.registry.getModule("edge2", "mod9")).toBeUndefined();
    expect(edge.registry.getModule("edge2", "mod9")).toBeUndefined();

    // The root away: writes cannot be done, reads still answer.
    await stopHub(root);
    const away = await as("edge2", "PUT", "/devices/edge2/modules/later", {});
    expect(away.status).toBe(503);
    expect(JSON.stringify(away.body)).toMatch(/parent hub is unreachable/);
    expect((await as("edge2", "GET", "/devices/edge2/modules/%24edgeHub")).status).toBe(200);
  });

  it("a device presenting its X.509 certificate (no Authorization) writes its own modules, and only its own", async () => {
    const root = await startRoot(await tempDir());
    const cert = await selfSigned("xedge");
    await root.registry.createDevice({
      deviceId: "xedge",
      capabilities: { iotEdge: true },
      authentication: {
        type: "selfSigned",
        x509Thumbprint: { primaryThumbprint: cert.thumbprint, secondaryThumbprint: null },
      },
    });
    await root.registry.createDevice({ deviceId: "dev2" });
    const withCert = (method: string, path: string, pem: Pem, body?: unknown, ifMatch?: string) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request(
          {
            host: "localhost",
            port: root.ports.https,
            path: `${path}?api-version=2017-11-08-preview`,
            method,
            ca: root.caCertificate,
            cert: pem.cert,
            key: pem.key,
            headers: { "content-type": "application/json", ...(ifMatch ? { "if-match": ifMatch } : {}) },
          },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
      });
    expect(
      await withCert("PUT", "/devices/xedge/modules/m1", cert, { moduleId: "m1", deviceId: "xedge" }),
    ).toBe(200);
    expect(root.registry.getModule("xedge", "m1")).toBeDefined();
    expect(await withCert("GET", "/devices/xedge/modules", cert)).toBe(200);
    expect(await withCert("PUT", "/devices/dev2/modules/m1", cert, {})).toBe(401);
    expect(await withCert("PUT", "/devices/xedge/modules/m2", await selfSigned("xedge"), {})).toBe(401);
    expect(await withCert("DELETE", "/devices/xedge/modules/%24edgeAgent", cert, undefined, "*")).toBe(403);
    expect(await withCert("DELETE", "/devices/xedge/modules/m1", cert, undefined, "*")).toBe(204);
    expect(root.registry.getModule("xedge", "m1")).toBeUndefined();
  });
});
