import { join } from "node:path";
import { Client, type Twin } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeHub, type EdgeHubError, silentLogger } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";

const hubs: EdgeHub[] = [];
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(hubs.splice(0).map((h) => h.close()));
});

async function start(dataDir: string): Promise<EdgeHub> {
  const hub = await EdgeHub.start(
    { hostname: "localhost", dataDir, listen: { host: "127.0.0.1", mqtts: 0 } },
    silentLogger,
  );
  hubs.push(hub);
  return hub;
}

async function device(hub: EdgeHub, deviceId: string): Promise<Client> {
  const d = hub.registry.getDevice(deviceId) ?? (await hub.registry.createDevice({ deviceId }));
  const key = d.authentication.symmetricKey?.primaryKey ?? "";
  const client = Client.fromConnectionString(
    `HostName=localhost;DeviceId=${deviceId};SharedAccessKey=${key};GatewayHostName=localhost:${hub.ports.mqtts}`,
    Mqtt,
  );
  await client.setOptions({ ca: hub.caCertificate });
  await client.open();
  clients.push(client);
  return client;
}

const updateReported = (twin: Twin, patch: unknown) =>
  new Promise<void>((resolve, reject) =>
    twin.properties.reported.update(patch, (err?: Error) => (err ? reject(err) : resolve())),
  );

describe("twins with the official device SDK", () => {
  it("gets the twin, stores reported patches with versions, pushes desired changes, and keeps them across a restart", async () => {
    const dir = join(await tempDir(), "hub");
    const hub = await start(dir);
    await hub.registry.createDevice({ deviceId: "thermo" });
    await hub.twins.patchDesired("thermo", { setpoint: 21, schedule: { night: 17 } });
    const client = await device(hub, "thermo");
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
    clients.pop();
    await hub.close();
    hubs.pop();
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
    // Over MQTT the device's request fails with the 400 the hub answers.
    await hub.registry.createDevice({ deviceId: "dev" });
    const client = await device(hub, "dev");
    const twin = await client.getTwin();
    await expect(updateReported(twin, { "bad key": 1 })).rejects.toThrow();
    expect((await hub.twins.get("dev")).reported.version).toBe(1);
  });
});
