import { describe, expect, it } from "vitest";
import { loadConfig } from "../../ts/config/config.js";
import { rootEvents } from "../helpers/edge.js";
import { eventually } from "../helpers/fixtures.js";
import { openLeaves, type Site, send, site } from "../helpers/site.js";

const parent = { hostname: "root.plant.local", deviceId: "edge1", sharedAccessKey: "a".repeat(24) };

/** The properties the root stored with leaf-a's message `seq`, once it is there. */
async function storedAtRoot(s: Site, seq: number): Promise<Record<string, string>> {
  let found: Record<string, string> | undefined;
  await eventually(`leaf-a's message ${seq} at the root`, async () => {
    found = (await rootEvents(s.root)).find(
      (e) => e.properties["$.cdid"] === "leaf-a" && e.properties.seq === String(seq),
    )?.properties;
    return found !== undefined;
  });
  return found as Record<string, string>;
}

describe("what goes up depends on the kind of parent (nothing invented towards Azure IoT Hub)", () => {
  it("the kind is configured: edgehub unless the hub named by every token is Azure IoT Hub's", () => {
    const kind = (p: Record<string, unknown>) => loadConfig({ parent: { ...parent, ...p } }).parent?.type;
    expect(kind({})).toBe("edgehub");
    expect(kind({ hubHostname: "plant.azure-devices.net" })).toBe("iothub");
    expect(kind({ hostname: "gw.plant.local", hubHostname: "plant.AZURE-devices.cn" })).toBe("iothub");
    expect(kind({ hubHostname: "plant.azure-devices.net", type: "edgehub" })).toBe("edgehub");
    expect(kind({ type: "iothub" })).toBe("iothub");
    expect(() => kind({ type: "azure" })).toThrow(/parent\.type/);
  });

  it('towards parent.type "iothub" a message carries only what the device set: no forwarder id', async () => {
    const s = await site({ type: "iothub" });
    const clients = await openLeaves(s);
    await send(clients, 0, 2, (i) => (i === 0 ? "m-0" : undefined));
    const first = await storedAtRoot(s, 0);
    const second = await storedAtRoot(s, 1);
    expect(first["$.fid"]).toBeUndefined();
    expect(first["$.mid"]).toBe("m-0");
    expect(second["$.fid"]).toBeUndefined();
    expect(second["$.mid"]).toBeUndefined();
    // Nothing else of the edge's making either: the device's own key, and what the root stamps.
    expect(Object.keys(second).filter((k) => !k.startsWith("$.c") && !k.startsWith("iothub-"))).toEqual([
      "seq",
    ]);
    await Promise.all(clients.map((c) => c.close()));
  });

  it("towards an edgehub parent (the default) the forwarder id goes with every message", async () => {
    const s = await site();
    const clients = await openLeaves(s);
    await send(clients, 0, 1);
    expect((await storedAtRoot(s, 0))["$.fid"]).toMatch(/^edge1\/[A-Za-z0-9_-]{12}\/u\/\d+$/);
    await Promise.all(clients.map((c) => c.close()));
  });
});
