import { join } from "node:path";
import type { Registry } from "azure-iothub";
import { describe, expect, it } from "vitest";
import { tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";
import { call, sdkRegistry } from "../helpers/service.js";

/** The name of the error a promise rejects with, and the body the hub answered. */
async function failure(p: Promise<unknown>): Promise<{ name: string; body: unknown }> {
  return p.then(
    () => ({ name: "resolved", body: undefined }),
    (e: Error & { responseBody?: string }) => ({
      name: e.constructor.name,
      body: e.responseBody ? JSON.parse(e.responseBody) : undefined,
    }),
  );
}

async function hubAndRegistry(extra = {}) {
  const hub = await startHub(join(await tempDir(), "hub"), extra);
  return { hub, registry: sdkRegistry(hub) };
}

const scopeOf = (d: object) => (d as { deviceScope: string }).deviceScope;
const ids = (r: Registry) => r.list().then((l) => l.responseBody.map((d) => d.deviceId).sort());

describe("the official azure-iothub Registry against the hub", () => {
  it('replaces devices and modules with If-Match "*" (quoted, as the SDK sends it) or their etag', async () => {
    const { registry } = await hubAndRegistry();
    await registry.create({ deviceId: "d1" });
    // Registry.update always sends If-Match: "*".
    expect((await registry.update({ deviceId: "d1", status: "disabled" })).responseBody.status).toBe(
      "disabled",
    );
    await registry.addModule({ deviceId: "d1", moduleId: "m1" });
    const m1 = (await registry.getModule("d1", "m1")).responseBody;
    const forced = (await registry.updateModule({ ...m1, managedBy: "ops" }, true)).responseBody;
    expect(forced).toMatchObject({ deviceId: "d1", moduleId: "m1", managedBy: "ops" });
    expect(forced.etag).not.toBe(m1.etag);
    // With its etag the update wins once; the same (now stale) etag loses with 412.
    const byEtag = (await registry.updateModule({ ...forced, managedBy: "team" }, false)).responseBody;
    expect(byEtag.managedBy).toBe("team");
    expect((await failure(registry.updateModule({ ...forced, managedBy: "late" }, false))).name).toBe(
      "InvalidEtagError",
    );
    expect((await registry.getModule("d1", "m1")).responseBody.managedBy).toBe("team");
    // addModule on an existing module is still a conflict.
    expect((await failure(registry.addModule({ deviceId: "d1", moduleId: "m1" }))).name).toBe(
      "DeviceAlreadyExistsError",
    );
  });

  it("honours If-Match on twin updates and clears every desired property with desired: null", async () => {
    const { registry } = await hubAndRegistry();
    await registry.create({ deviceId: "t1" });
    const first = (await registry.getTwin("t1")).responseBody;
    await registry.updateTwin("t1", { properties: { desired: { a: 1, b: { c: 2 } } } }, first.etag);
    // first.etag is stale now: the update is refused and changes nothing.
    expect(
      (await failure(registry.updateTwin("t1", { properties: { desired: { a: 9 } } }, first.etag))).name,
    ).toBe("InvalidEtagError");
    const beforeTags = (await registry.getTwin("t1")).responseBody.etag;
    const tagged = (await registry.updateTwin("t1", { tags: { site: "x" } }, "*")).responseBody;
    // A tags change moves the etag too.
    expect(tagged.etag).not.toBe(beforeTags);
    expect((await failure(registry.updateTwin("t1", { tags: { site: "y" } }, beforeTags))).name).toBe(
      "InvalidEtagError",
    );
    expect(tagged.properties.desired).toMatchObject({ a: 1, b: { c: 2 } });
    const cleared = (await registry.updateTwin("t1", { properties: { desired: null } }, tagged.etag))
      .responseBody;
    expect(cleared.properties.desired).toEqual({ $metadata: {}, $version: 3 });
    expect(cleared.tags).toEqual({ site: "x" });
  });

  it("creates, updates and removes up to 100 devices per bulk call, each succeeding or failing on its own", async () => {
    const { hub, registry } = await hubAndRegistry();
    const added = await registry.addDevices([{ deviceId: "b1" }, { deviceId: "b2" }, { deviceId: "b3" }]);
    expect(added.responseBody).toEqual({ isSuccessful: true, errors: [], warnings: [] });
    expect(await ids(registry)).toEqual(["b1", "b2", "b3"]);
    expect(hub.registry.getDevice("b1")?.authentication.symmetricKey?.primaryKey).toMatch(/=$/);

    // One existing id fails alone; the new one is created (IoT Hub's bulk call is not all-or-nothing).
    const again = await failure(registry.addDevices([{ deviceId: "b1" }, { deviceId: "b4" }]));
    expect(again.name).toBe("ArgumentError");
    expect(again.body).toMatchObject({
      isSuccessful: false,
      errors: [{ deviceId: "b1", errorCode: "DeviceAlreadyExists" }],
      warnings: [],
    });
    expect(await ids(registry)).toEqual(["b1", "b2", "b3", "b4"]);

    const b2 = (await registry.get("b2")).responseBody;
    const stale = { deviceId: "b2", status: "disabled" as const, etag: "stale" };
    const refused = await failure(
      registry.updateDevices([stale, { deviceId: "ghost", status: "disabled" }], false),
    );
    expect(refused.body).toMatchObject({
      isSuccessful: false,
      errors: [
        { deviceId: "b2", errorCode: "PreconditionFailed" },
        { deviceId: "ghost", errorCode: "DeviceNotFound" },
      ],
    });
    expect(hub.registry.getDevice("b2")?.status).toBe("enabled");
    await registry.updateDevices([{ deviceId: "b2", status: "disabled", etag: b2.etag }], false);
    expect(hub.registry.getDevice("b2")?.status).toBe("disabled");
    await registry.updateDevices([{ deviceId: "b3", status: "disabled" }], true);
    expect(hub.registry.getDevice("b3")?.status).toBe("disabled");

    const removed = await registry.removeDevices([{ deviceId: "b1" }, { deviceId: "b2" }], true);
    expect(removed.responseBody.isSuccessful).toBe(true);
    expect(await ids(registry)).toEqual(["b3", "b4"]);

    // The SDK refuses more than 100 itself; the hub does too, and applies none of them.
    const many = Array.from({ length: 101 }, (_, i) => ({ id: `n${i}`, importMode: "create" }));
    expect((await call(hub, "POST", "/devices", many)).status).toBe(400);
    const twice = [
      { id: "dup", importMode: "create" },
      { id: "dup", importMode: "delete" },
    ];
    expect((await call(hub, "POST", "/devices", twice)).status).toBe(400);
    expect(await ids(registry)).toEqual(["b3", "b4"]);
  });

  it("nests edge devices by default, as IoT Hub does; allowNesting: false forbids it", async () => {
    const { registry } = await hubAndRegistry();
    const edge1 = (await registry.create({ deviceId: "edge1", capabilities: { iotEdge: true } }))
      .responseBody;
    const nested = {
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [scopeOf(edge1)],
    };
    const created = (await registry.create(nested)).responseBody as unknown as { parentScopes: string[] };
    expect(created.parentScopes).toEqual([scopeOf(edge1)]);

    const strict = await hubAndRegistry({ allowNesting: false });
    const e1 = (await strict.registry.create({ deviceId: "edge1", capabilities: { iotEdge: true } }))
      .responseBody;
    const refused = await failure(strict.registry.create({ ...nested, parentScopes: [scopeOf(e1)] }));
    expect(refused.name).toBe("ArgumentError");
  });
});
