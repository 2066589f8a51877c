import { describe, expect, it } from "vitest";
import { routesConfig } from "../../ts/config/config.js";
import { MessageStore } from "../../ts/index.js";
import { type RoutedMessage, RouteTable } from "../../ts/routing/route-table.js";
import { Router } from "../../ts/routing/router.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

const table = (
  routes: Record<string, string | { route: string; priority?: number; timeToLiveSecs?: number }>,
) => new RouteTable(routesConfig("routes", routes), "$upstream", () => "edge1");

const device: RoutedMessage = {
  deviceId: "sensor-1",
  properties: { "$.cdid": "sensor-1", alert: "true", "$.ct": "application/json" },
  body: Buffer.from('{"temperature": 41}'),
};
const moduleOut = (output: string): RoutedMessage => ({
  deviceId: "edge1",
  moduleId: "filter",
  properties: { "$.cdid": "edge1", "$.cmid": "filter", "$.on": output },
  body: Buffer.from("x"),
});

describe("route table", () => {
  it("sends everything upstream when no routes are configured", () => {
    const t = table({});
    expect(t.isDefault).toBe(true);
    expect(t.destinations(device)).toEqual([{ queue: "$upstream", ttlSecs: undefined }]);
  });

  it("matches sources, conditions and sinks, stores once per endpoint, and counts what no route takes", () => {
    const t = table({
      toFilter:
        'FROM /messages/* WHERE NOT IS_DEFINED($connectionModuleId) INTO BrokeredEndpoint("/modules/filter/inputs/input1")',
      hot: { route: "FROM /messages/* WHERE $body.temperature > 40 INTO $upstream", timeToLiveSecs: 60 },
      alerts: "FROM /messages/modules/filter/outputs/alerts INTO $upstream",
      again: "FROM /messages/modules/filter/outputs/alerts INTO $upstream",
      display:
        "FROM /messages/modules/filter/outputs/* WHERE $outputName = 'display' INTO DeviceEndpoint(\"/devices/panel\")",
    });
    expect(t.destinations(device)).toEqual([
      { queue: "$inputs/edge1/filter", ttlSecs: undefined, input: "input1", clientId: "edge1/filter" },
      { queue: "$upstream", ttlSecs: 60 },
    ]);
    expect(t.destinations(moduleOut("alerts"))).toEqual([{ queue: "$upstream", ttlSecs: undefined }]);
    expect(t.destinations(moduleOut("display"))).toEqual([
      { queue: "$c2d/panel", ttlSecs: undefined, clientId: "panel" },
    ]);
    expect(t.unrouted).toBe(0);
    expect(t.destinations(moduleOut("other"))).toEqual([]);
    expect(
      t.destinations({
        ...device,
        body: Buffer.from('{"temperature": 20}'),
        deviceId: "x",
        properties: { "$.cdid": "x", "$.cmid": "m" },
        moduleId: "m",
      }),
    ).toEqual([]);
    expect(t.unrouted).toBe(2);
  });

  it("puts a route's priority on module-input and device endpoints too; a message goes once to an endpoint", () => {
    const t = table({
      urgent: {
        route:
          "FROM /messages/* WHERE alert = 'true' INTO BrokeredEndpoint(\"/modules/filter/inputs/input1\")",
        priority: 0,
      },
      all: 'FROM /messages/* INTO BrokeredEndpoint("/modules/filter/inputs/input1")',
      panel: { route: 'FROM /messages/* INTO DeviceEndpoint("/devices/panel")', priority: 3 },
    });
    expect(t.destinations(device)).toEqual([
      { queue: "$inputs/edge1/filter/p0", ttlSecs: undefined, input: "input1", clientId: "edge1/filter" },
      { queue: "$c2d/panel/p3", ttlSecs: undefined, clientId: "panel" },
    ]);
    // Taken by one route into the endpoint: its queue; by both: once, in the more urgent one.
    expect(t.destinations({ ...device, properties: { "$.cdid": "sensor-1" } })).toEqual([
      { queue: "$inputs/edge1/filter", ttlSecs: undefined, input: "input1", clientId: "edge1/filter" },
      { queue: "$c2d/panel/p3", ttlSecs: undefined, clientId: "panel" },
    ]);
  });
});

describe("twin change notifications in the route table", () => {
  it("are taken by /twinChangeNotifications and /*, never by /messages routes, nor upstream on an edge", () => {
    const routes = routesConfig("routes", {
      all: "FROM /* INTO $upstream",
      twins: 'FROM /twinChangeNotifications WHERE $body.fan = 1 INTO BrokeredEndpoint("/modules/m/inputs/t")',
      messages: 'FROM /messages/* INTO BrokeredEndpoint("/modules/m/inputs/msg")',
    });
    const change = (body: string): RoutedMessage => ({
      deviceId: "sensor-1",
      properties: { "$.cdid": "sensor-1", "$.ct": "application/json", "$.ce": "utf-8" },
      body: Buffer.from(body),
      twinChange: true,
    });
    const root = new RouteTable(routes, "$events", () => "edge1");
    expect(root.takesTwinChanges).toBe(true);
    expect(root.destinations(change('{"fan":1}')).map((d) => d.queue)).toEqual([
      "$events",
      "$inputs/edge1/m",
    ]);
    const edge = new RouteTable(routes, "$upstream", () => "edge1", true);
    expect(edge.destinations(change('{"fan":1}')).map((d) => d.queue)).toEqual(["$inputs/edge1/m"]);
    expect(edge.destinations(change('{"fan":2}'))).toEqual([]);
    expect(edge.unrouted).toBe(0);
    expect(edge.destinations(device).map((d) => d.input ?? d.queue)).toEqual(["$upstream", "msg"]);
    expect(table({ m: "FROM /messages/* INTO $upstream" }).takesTwinChanges).toBe(false);
    expect(table({}).destinations(change("{}"))).toEqual([]);
  });
});

describe("router", () => {
  it("stores a message routed upstream and to one module input in one append, the input named on it", async () => {
    const store = await openStore(await tempDir());
    const routes = routesConfig("routes", {
      up: "FROM /messages/* INTO $upstream",
      filter: 'FROM /messages/* INTO BrokeredEndpoint("/modules/filter/inputs/input1")',
      audit: "FROM /messages/* WHERE alert = 'true' INTO BrokeredEndpoint(\"/modules/audit/inputs/alerts\")",
    });
    const router = new Router(store, new RouteTable(routes, "$upstream", () => "edge1", true));
    const accept = (properties: Record<string, string>) =>
      new Promise<unknown>((resolve) =>
        router.accept({ deviceId: "sensor-1", body: Buffer.from("x"), properties }, (err) => resolve(err)),
      );
    expect(await accept({ n: "1" })).toBeNull();
    expect(await accept({ n: "2", alert: "true" })).toBeNull();
    const up = await store.read("$upstream");
    const filter = await store.read("$inputs/edge1/filter");
    const audit = await store.read("$inputs/edge1/audit");
    expect(up.map((m) => m.properties.n)).toEqual(["1", "2"]);
    expect(filter.map((m) => [m.properties.n, m.properties["$.in"]])).toEqual([
      ["1", "input1"],
      ["2", "input1"],
    ]);
    expect(audit.map((m) => [m.properties.n, m.properties["$.in"]])).toEqual([["2", "alerts"]]);
    // One input among the endpoints: one append for all, every copy naming it (the upstream
    // one ignores it); two inputs: each copy apart, the upstream one without a name.
    expect(up.map((m) => m.properties["$.in"])).toEqual(["input1", undefined]);
  });

  it("stores every copy of a message fanned out to several inputs and TTLs, or none of them", async () => {
    const store = await MessageStore.open(await tempDir(), { maxSizeBytes: 2048 });
    const routes = routesConfig("routes", {
      up: { route: "FROM /messages/* INTO $upstream", timeToLiveSecs: 60 },
      a: 'FROM /messages/* INTO BrokeredEndpoint("/modules/filter/inputs/a")',
      b: { route: 'FROM /messages/* INTO BrokeredEndpoint("/modules/filter/inputs/b")', priority: 1 },
      c: 'FROM /messages/* INTO BrokeredEndpoint("/modules/audit/inputs/c")',
    });
    const router = new Router(store, new RouteTable(routes, "$upstream", () => "edge1", true));
    const accept = (body: Buffer) =>
      new Promise<unknown>((resolve) =>
        router.accept({ deviceId: "sensor-1", body, properties: {} }, (err) => resolve(err)),
      );
    expect(await accept(Buffer.from("small"))).toBeNull();
    const copies = async () =>
      Object.fromEntries(
        await Promise.all(
          ["$upstream", "$inputs/edge1/filter", "$inputs/edge1/filter/p1", "$inputs/edge1/audit"].map(
            async (q) => [
              q,
              (await store.read(q)).map((m) => `${m.body.length}:${m.properties["$.in"] ?? ""}`),
            ],
          ),
        ),
      );
    const one = await copies();
    expect(one).toEqual({
      $upstream: ["5:"],
      "$inputs/edge1/filter": ["5:a"],
      "$inputs/edge1/filter/p1": ["5:b"],
      "$inputs/edge1/audit": ["5:c"],
    });
    // Four copies of 400 bytes do not fit in what is left: the store refuses them all,
    // though the first copies alone would have fitted.
    expect(await accept(Buffer.alloc(400))).toMatchObject({ code: "STORE_FULL" });
    expect(await copies()).toEqual(one);
    expect((await store.stats()).count).toBe(4);
    await store.close();
  });

  it("recognises a child hub's resend after a restart: ids still stored at the end of the upstream queues", async () => {
    const dir = await tempDir();
    const table = () => new RouteTable({}, "$events", () => "x");
    const forwarded = (mid: string) => ({
      deviceId: "sensor-1",
      body: Buffer.from(mid),
      properties: { "$.fid": mid },
      forwarded: true,
    });
    const accept = (router: Router, mid: string) =>
      new Promise<unknown>((resolve) => router.accept(forwarded(mid), (err) => resolve(err)));
    const first = await MessageStore.open(dir);
    // Older messages of the same sender elsewhere, more than are kept per sender: recalled
    // first (oldest first across queues), they do not push out the ids it may resend.
    await first.append(
      "$inputs/edge1/old",
      Array.from({ length: 600 }, (_, i) => ({
        body: Buffer.from("old"),
        properties: { "$.fid": `old-${i}`, "$.cdid": "sensor-1" },
      })),
    );
    await new Promise((resolve) => setTimeout(resolve, 5));
    const before = new Router(first, table());
    for (const mid of ["edge-0", "edge-1", "edge-2"]) expect(await accept(before, mid)).toBeNull();
    await first.close();
    // The hub restarts; the child resends its window, then goes on.
    const store = await openStore(dir);
    const after = new Router(store, table());
    await after.recall((q) => q === "$events" || q.startsWith("$inputs/"));
    for (const mid of ["edge-1", "edge-2", "edge-3"]) expect(await accept(after, mid)).toBeNull();
    expect((await store.read("$events")).map((m) => m.body.toString())).toEqual([
      "edge-0",
      "edge-1",
      "edge-2",
      "edge-3",
    ]);
    // Without recall the resend would have been stored again.
    const forgetful = new Router(store, table());
    expect(await accept(forgetful, "edge-3")).toBeNull();
    expect(await store.read("$events")).toHaveLength(5);
  });

  it("stores every distinct message a child hub forwards whatever its $.mid, drops a resend by its forwarder id, and takes no forwarder id from a device", async () => {
    const store = await openStore(await tempDir());
    const router = new Router(store, new RouteTable({}, "$events", () => "x"));
    const accept = (props: Record<string, string>, forwarded: boolean, body: string) =>
      new Promise<unknown>((resolve) =>
        router.accept(
          { deviceId: "sensor-1", body: Buffer.from(body), properties: props, forwarded },
          resolve,
        ),
      );
    // Three distinct messages with the device's constant id, each with its own forwarder id.
    for (const [i, fid] of ["e/i/u/0", "e/i/u/1", "e/i/u/2"].entries())
      expect(await accept({ "$.mid": "42", "$.fid": fid }, true, `m${i}`)).toBeNull();
    // A resend of the second: acknowledged, not stored.
    expect(await accept({ "$.mid": "42", "$.fid": "e/i/u/1" }, true, "m1")).toBeNull();
    // A device of this hub cannot state a forwarder id (nor have its message dropped by one).
    expect(await accept({ "$.mid": "42", "$.fid": "e/i/u/2" }, false, "direct")).toBeNull();
    const stored = await store.read("$events");
    expect(stored.map((m) => m.body.toString())).toEqual(["m0", "m1", "m2", "direct"]);
    expect(stored.map((m) => m.properties["$.mid"])).toEqual(["42", "42", "42", "42"]);
    expect(stored[3]?.properties["$.fid"]).toBeUndefined();
  });
});
