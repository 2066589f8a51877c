import type { Twin } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  startEdge,
  startRoot,
  synced,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { BlackholeProxy } from "../helpers/proxy.js";

const updateReported = (twin: Twin, patch: unknown) =>
  new Promise<void>((resolve, reject) =>
    twin.properties.reported.update(patch, (err?: Error) => (err ? reject(err) : resolve())),
  );

describe("twins through an outage", () => {
  it("offline reported patches go up in order after the link returns; desired changes made upstream meanwhile reach a connected device and one that connects later", async () => {
    const root = await startRoot(await tempDir());
    const proxy = await BlackholeProxy.start(root.ports.mqtts);
    const parent = {
      ...(await edgeIdentity(root, "edge1")),
      port: proxy.port,
      keepaliveSecs: 1,
      ackTimeoutMs: 1000,
    };
    const keyA = await childOf(root, "edge1", "thermo");
    const keyB = await childOf(root, "edge1", "late");
    await root.twins.patchDesired("late", { mode: "comfort" });
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    await eventually("online", () => edge.upstream?.online === true);

    const thermo = await childClient(gatewayOf(edge), "thermo", keyA);
    await thermo.open();
    const twin = await thermo.getTwin();
    await updateReported(twin, { temperature: 20, fw: "1.0" });
    await eventually(
      "online patch at the root",
      async () => (await root.twins.get("thermo")).reported.properties.temperature === 20,
    );
    // Live while online: a desired change on the root reaches the device through the edge.
    const live = new Promise<unknown>((resolve) =>
      twin.on("properties.desired", (p: { setpoint?: number }) => p.setpoint === 21 && resolve(p)),
    );
    await root.twins.patchDesired("thermo", { setpoint: 21 });
    await live;

    // The route goes down. The device keeps reporting; the root's desired properties change.
    proxy.cut();
    await eventually("offline", () => edge.upstream?.online === false);
    await updateReported(twin, { temperature: 21 });
    await updateReported(twin, { fw: null, state: "heating" });
    await updateReported(twin, { temperature: 22 });
    expect((await edge.twins.get("thermo")).reported.properties).toEqual({
      temperature: 22,
      state: "heating",
    });
    await root.twins.patchDesired("thermo", { setpoint: 18, away: true });
    await root.twins.patchDesired("late", { mode: "eco" });
    const resynced = new Promise<Record<string, unknown>>((resolve) =>
      twin.on("properties.desired", (p: Record<string, unknown>) => p.setpoint === 18 && resolve(p)),
    );

    proxy.restore();
    const upstreamVersion = async () => (await root.twins.get("thermo")).reported.version;
    await eventually(
      "reported patches at the root",
      async () => (await root.twins.get("thermo")).reported.properties.temperature === 22,
    );
    expect((await root.twins.get("thermo")).reported.properties).toEqual({
      temperature: 22,
      state: "heating",
    });
    // The parent's version replaces the local one.
    await eventually(
      "versions agree",
      async () => (await edge.twins.get("thermo")).reported.version === (await upstreamVersion()),
    );
    const patch = await resynced;
    expect(patch).toMatchObject({
      setpoint: 18,
      away: true,
      $version: (await root.twins.get("thermo")).desired.version,
    });
    expect(twin.properties.desired).toMatchObject({ setpoint: 18, away: true });

    // A device that connects after the return reads the changed desired properties.
    // (The edge never held its twin: the first GET while online fetches it from the parent.)
    const late = await childClient(gatewayOf(edge), "late", keyB);
    await late.open();
    expect((await late.getTwin()).properties.desired.mode).toBe("eco");
  });
});
