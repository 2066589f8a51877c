import { describe, expect, it } from "vitest";
import { loadConfig } from "../../ts/config/config.js";
import type { EdgeHub } from "../../ts/index.js";
import { edgeIdentity, startEdge, startRoot } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";

const maxSize = async (hub: EdgeHub) => (await hub.store.stats()).maxSizeBytes;

describe("$edgeHub settings from the parent", () => {
  it("applies desired routes, TTL and quota live, refuses a bad patch whole, and starts offline on the cached ones", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const edgeDir = await tempDir();
    const edge = await startEdge(edgeDir, parent, {
      routes: { fromConfig: "FROM /messages/* INTO $upstream" },
    });
    expect(Object.keys(edge.settings.current.routes)).toEqual(["fromConfig"]);
    await eventually("online", () => edge.upstream?.online === true);

    await root.twins.patchDesired("edge1/$edgeHub", {
      schemaVersion: "1.1",
      routes: {
        toCloud: "FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO $upstream",
        filtered: {
          route: "FROM /messages/modules/filter/outputs/* INTO $upstream",
          priority: 1,
          timeToLiveSecs: 60,
        },
      },
      storeAndForwardConfiguration: { timeToLiveSecs: 1800, storeLimits: { maxSizeBytes: 50_000_000 } },
    });
    await eventually("applied", async () => (await maxSize(edge)) === 50_000_000);
    expect(edge.settings.current).toMatchObject({
      timeToLiveSecs: 1800,
      maxSizeBytes: 50_000_000,
      routes: {
        toCloud: { priority: undefined },
        filtered: {
          route: "FROM /messages/modules/filter/outputs/* INTO $upstream",
          priority: 1,
          timeToLiveSecs: 60,
        },
      },
    });

    // A patch that does not validate changes nothing.
    await root.twins.patchDesired("edge1/$edgeHub", {
      storeAndForwardConfiguration: { storeLimits: { maxSizeBytes: -5 } },
    });
    // A valid one after it shows the bad one was skipped, not queued.
    await root.twins.patchDesired("edge1/$edgeHub", {
      storeAndForwardConfiguration: { timeToLiveSecs: 900 },
    });
    await eventually("second patch applied", () => edge.settings.current.timeToLiveSecs === 900);
    expect(await maxSize(edge)).toBe(50_000_000);
    // Removing a route (null) is a patch like any other.
    await root.twins.patchDesired("edge1/$edgeHub", { routes: { filtered: null } });
    await eventually("route removed", () => edge.settings.current.routes.filtered === undefined);

    // Offline restart: the cached settings, not the config's.
    await stopHub(root);
    await stopHub(edge);
    const again = await startEdge(edgeDir, parent, {
      routes: { fromConfig: "FROM /messages/* INTO $upstream" },
    });
    expect(again.settings.current.timeToLiveSecs).toBe(900);
    expect(Object.keys(again.settings.current.routes)).toEqual(["toCloud"]);
    expect(await maxSize(again)).toBe(50_000_000);
  });

  it("keeps a __proto__ key from the parent as data: nothing is inherited by the settings", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const edge = await startEdge(await tempDir(), parent, {
      routes: { fromConfig: "FROM /messages/* INTO $upstream" },
    });
    await eventually("online", () => edge.upstream?.online === true);
    // JSON.parse makes `__proto__` an own key, as it arrives on the wire.
    await root.twins.patchDesired(
      "edge1/$edgeHub",
      JSON.parse(
        '{"__proto__":{"routes":{"sneaky":"FROM /messages/* INTO $upstream"}},"storeAndForwardConfiguration":{"timeToLiveSecs":901}}',
      ),
    );
    await eventually("patch applied", () => edge.settings.current.timeToLiveSecs === 901);
    expect(Object.keys(edge.settings.current.routes)).toEqual(["fromConfig"]);
    expect(Object.prototype).not.toHaveProperty("routes");
  });

  it("takes an IoT Edge deployment manifest's $edgeHub section as config", () => {
    const manifest = {
      modulesContent: {
        $edgeHub: {
          "properties.desired": {
            schemaVersion: "1.1",
            routes: {
              r1: "FROM /messages/* INTO $upstream",
              r2: { route: "FROM /messages/* INTO $upstream", priority: 3 },
            },
            storeAndForwardConfiguration: { timeToLiveSecs: 120 },
          },
        },
      },
    };
    const c = loadConfig({
      ...manifest,
      storeAndForwardConfiguration: { storeLimits: { maxSizeBytes: 1000 } },
    });
    expect(c.timeToLiveSecs).toBe(120);
    expect(c.maxSizeBytes).toBe(1000);
    expect(c.routes.r2).toMatchObject({
      route: "FROM /messages/* INTO $upstream",
      priority: 3,
      timeToLiveSecs: undefined,
    });
    expect(c.routes.r2?.parsed.sink).toEqual({ kind: "upstream" });
    expect(() => loadConfig({ routes: { r: "FROM /messages/x INTO $upstream" } })).toThrow(
      /config key routes\.r: at column 6: unknown source/,
    );
    expect(() =>
      loadConfig({ $edgeHub: { "properties.desired": { routes: { bad: { route: "x", priority: 12 } } } } }),
    ).toThrow(/routes\.bad\.priority: must be an integer 0-9/);
  });
});
