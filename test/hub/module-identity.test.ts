/**
 * The module identity API by a device's own credential (docs/upstream-forms.md §7, IS
 * `aziot-hub-client-async/src/lib.rs#Client::get_module`): a device reads its own modules
 * with their keys, nothing else; the service policy keeps reading everything; an edge hub
 * answers its child edges from its scope cache, with its parent away.
 */
import { describe, expect, it } from "vitest";
import { createSasToken } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";
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
    // PUT by a device credential is not served: the policy path refuses the device token.
    const put = await call(
      root,
      "PUT",
      PATH,
      { moduleId: "$edgeHub" },
      {
        authorization: tokenOf("localhost", "edge1", keyOf(root, "edge1")),
      },
    );
    expect(put.status).toBe(401);

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
});
