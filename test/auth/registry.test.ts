import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Registry } from "../../ts/auth/registry.js";
import { SecretBox } from "../../ts/auth/secret-box.js";
import { type EdgeHubError, MessageStore } from "../../ts/index.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

async function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "resolved",
    (e: unknown) => (e as EdgeHubError).code,
  );
}

describe("registry", () => {
  it("creates devices and modules as IoT Hub does and keeps them across restarts", async () => {
    const dir = await tempDir();
    const keyFile = join(dir, "secrets.key");
    const store = await MessageStore.open(join(dir, "store"));
    const reg = await Registry.open(store, await SecretBox.fromKeyFile(keyFile));
    const dev = await reg.createDevice({ deviceId: "sensor-1" });
    expect(dev.authentication.type).toBe("sas");
    expect(Buffer.from(dev.authentication.symmetricKey?.primaryKey ?? "", "base64")).toHaveLength(32);
    expect(dev.status).toBe("enabled");
    const edge = await reg.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    expect(edge.deviceScope).toBe(`ms-azure-iot-edge://edge1-${edge.generationId}`);
    const child = await reg.createDevice({ deviceId: "leaf", deviceScope: edge.deviceScope });
    expect(child.parentScopes).toEqual([edge.deviceScope]);
    await reg.createModule({ deviceId: "edge1", moduleId: "filter" });
    expect(await codeOf(reg.createDevice({ deviceId: "sensor-1" }))).toBe("IDENTITY_EXISTS");
    expect(await codeOf(reg.createDevice({ deviceId: "bad/id" }))).toBe("INVALID_ARGUMENT");
    expect(await codeOf(reg.createModule({ deviceId: "nope", moduleId: "m" }))).toBe("IDENTITY_NOT_FOUND");
    await reg.updateDevice({ deviceId: "sensor-1", status: "disabled" });
    await store.close();

    const again = await openStore(join(dir, "store"));
    const reg2 = await Registry.open(again, await SecretBox.fromKeyFile(keyFile));
    expect(reg2.getDevice("sensor-1")?.status).toBe("disabled");
    expect(reg2.getDevice("sensor-1")?.authentication).toEqual(dev.authentication);
    // An edge device comes with its runtime modules, as on IoT Hub.
    expect(
      reg2
        .listModules("edge1")
        .map((m) => m.moduleId)
        .sort(),
    ).toEqual(["$edgeAgent", "$edgeHub", "filter"]);
    await reg2.deleteDevice("edge1");
    expect(reg2.getModule("edge1", "filter")).toBeUndefined();
    expect(
      reg2
        .listDevices()
        .map((d) => d.deviceId)
        .sort(),
    ).toEqual(["leaf", "sensor-1"]);
  });

  it("keeps keys encrypted at rest, in a 0600 key file, and refuses a wrong key file", async () => {
    const dir = await tempDir();
    const store = await openStore(join(dir, "store"));
    const reg = await Registry.open(store, await SecretBox.fromKeyFile(join(dir, "secrets.key")));
    const dev = await reg.createDevice({ deviceId: "d1" });
    const raw = Buffer.concat((await store.kv.scan("registry")).map((e) => e.value));
    expect(raw.includes(Buffer.from(dev.authentication.symmetricKey?.primaryKey ?? "x"))).toBe(false);
    expect(raw.includes(Buffer.from("d1"))).toBe(false);
    const { stat } = await import("node:fs/promises");
    expect((await stat(join(dir, "secrets.key"))).mode & 0o777).toBe(0o600);
    expect((await readFile(join(dir, "secrets.key"))).length).toBe(32);
    const wrong = await SecretBox.fromKeyFile(join(dir, "other.key"));
    expect(await codeOf(Registry.open(store, wrong))).toBe("SECRET_UNREADABLE");
  });

  it("makes a device a child only of a registered edge device, and edge children only with nesting", async () => {
    const dir = await tempDir();
    const store = await openStore(join(dir, "store"));
    const box = await SecretBox.fromKeyFile(join(dir, "k"));
    const reg = await Registry.open(store, box, { allowNesting: false });
    const edge = await reg.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    expect(
      await codeOf(reg.createDevice({ deviceId: "orphan", deviceScope: "ms-azure-iot-edge://nope-1" })),
    ).toBe("INVALID_ARGUMENT");
    expect(await codeOf(reg.createDevice({ deviceId: "leaf", deviceScope: "sensor-scope" }))).toBe(
      "INVALID_ARGUMENT",
    );
    const nested = {
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [edge.deviceScope as string],
    };
    expect(await codeOf(reg.createDevice(nested))).toBe("INVALID_ARGUMENT");
    await store.close();
    const again = await openStore(join(dir, "store"));
    // Nesting is allowed by default, as on IoT Hub.
    const nesting = await Registry.open(again, box);
    expect((await nesting.createDevice(nested)).parentScopes).toEqual([edge.deviceScope]);
    const leaf = await nesting.createDevice({ deviceId: "leaf" });
    expect(leaf.parentScopes).toEqual([]);
    expect(
      (await nesting.updateDevice({ deviceId: "leaf", deviceScope: edge.deviceScope })).parentScopes,
    ).toEqual([edge.deviceScope]);
    expect((await nesting.updateDevice({ deviceId: "leaf", deviceScope: "" })).parentScopes).toEqual([]);
  });
});
