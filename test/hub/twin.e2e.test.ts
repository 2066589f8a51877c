import { join } from "node:path";
import type { Twin } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import type { EdgeHubError } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, startHub, stopHub, type Transport } from "../helpers/hub.js";

const start = (dir: string) => startHub(dir, BOTH_HEADS);

const updateReported = (twin: Twin, patch: unknown) =>
  new Promise<void>((resolve, reject) =>
    twin.properties.reported.update(patch, (err?: Error) => (err ? reject(err) : resolve())),
  );

describe.each<Transport>(["mqtt", "amqp"])("twins with the official device SDK over %s", (transport) => {
  it("gets the twin, stores reported patches with versions, pushes desired changes, and keeps them across a restart", async () => {
    const dir = join(await tempDir(), "hub");
    const hub = await start(dir);
    await hub.registry.createDevice({ deviceId: "thermo" });
    await hub.twins.patchDesired("thermo", { setpoint: 21, schedule: { night: 17 } });
    const client = await connectedDevice(hub, "thermo", transport);
    const twin = await client.getTwin();
    expect(twin.properties.desired.setpoint).toBe(21);
    expect(twin.properties.desired.$version).toBe(2);

    await updateReported(twin, { temperature: 20.5, fw: { version: "1.2" } });
    await updateReported(twin, { fw: { version: null, channel: "beta" } });
    const stored = await hub.twins.get("thermo");
    expect(stored.reported.properties).toEqual({ temperature: 20.5, fw: { channel: "beta" } });
    expect(stored.reported.version).toBe(3);

    const pushed = new Promise<Record<string, unknown>>((resolve) => {
      twin.on("properties.desired", (patch: Record<string, unknown>) => {
        if (patch.setpoint === 19) resolve(patch);
      });
    });
    await hub.twins.patchDesired("thermo", { setpoint: 19, schedule: { night: null } });
    const patch = await pushed;
    expect(patch.$version).toBe(3);
    expect(twin.properties.desired.schedule).toEqual({});

    await client.close();
    await stopHub(hub);
    const again = await start(dir);
    const doc = await again.twins.document("thermo");
    expect(doc.reported).toMatchObject({ temperature: 20.5, $version: 3 });
    expect(doc.desired).toMatchObject({ setpoint: 19, $version: 3 });
  });

  it("refuses patches that break IoT Hub's limits and leaves the twin as it was", async () => {
    const hub = await start(join(await tempDir(), "hub"));
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 10; i++) deep = { [`l${i}`]: deep };
    const bad: unknown[] = [deep, { "a.b": 1 }, { $x: 1 }, { big: "x".repeat(33 * 1024) }, [1, 2], "text"];
    for (const patch of bad) {
      const err = await hub.twins.patchReported("dev", patch).catch((e: unknown) => e as EdgeHubError);
      expect((err as EdgeHubError).code, JSON.stringify(patch).slice(0, 40)).toBe("TWIN_INVALID");
    }
    expect((await hub.twins.get("dev")).reported).toEqual({ properties: {}, version: 1 });
    // The device's request fails with the 400 the hub answers.
    await hub.registry.createDevice({ deviceId: "dev" });
    const client = await connectedDevice(hub, "dev", transport);
    const twin = await client.getTwin();
    await expect(updateReported(twin, { "bad key": 1 })).rejects.toThrow();
    expect((await hub.twins.get("dev")).reported.version).toBe(1);
  });
});
