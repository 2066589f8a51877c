/**
 * The scope sync against a hostile parent: a real HTTPS server that checks the edge's
 * token and wire form as a parent does and answers with what a real root hub never sends.
 * Every sync either applies the valid records of a whole scope, or fails and leaves the
 * cached one.
 */
import { describe, expect, it } from "vitest";
import { scopePath } from "../../ts/service/scope.js";
import {
  MAX_NESTING,
  MAX_SCOPE_PAGE_BYTES,
  MAX_SCOPE_PAGES,
  MAX_SCOPE_RECORDS,
} from "../../ts/upstream/scope-sync.js";
import { pollution } from "../helpers/adversarial.js";
import { RawHttpsParent } from "../helpers/raw-https-parent.js";
import { device, edgeDevice, edgeOf, json, KEY, module, syncedEdge } from "../helpers/scope-edge.js";

describe("scope sync from a hostile parent: records", () => {
  it("skips each record that does not validate, logs why, and applies the rest of the page", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    const bad = [
      device("bad/id"),
      device(""),
      device("x".repeat(129)),
      { ...device("n"), deviceId: 42 },
      { ...device("o"), deviceId: { __proto__: null, toString: "edge1" } },
      { ...device("weird-status"), status: "sometimes" },
      device("short-key", {
        authentication: { type: "sas", symmetricKey: { primaryKey: "c2hvcnQ=", secondaryKey: "c2hvcnQ=" } },
      }),
      { ...device("two-parents"), parentScopes: ["a", "b"] },
      { ...device("long-etag"), etag: "e".repeat(10_000) },
      "not a record",
    ];
    parent.answer = (_n, _call, res) =>
      json(res, {
        devices: [edgeDevice("edge1"), device("ok-1"), device("ok-1"), ...bad],
        modules: [
          module("edge1", "$edgeHub"),
          module("ok-1", "filter"),
          module("ok-1", "a/b"),
          module("stranger", "m"),
          module("bad/id", "m"),
        ],
        continuationLink: null,
      });
    expect(await edge.sync.sync()).toBe(true);
    expect(edge.ids()).toEqual(["edge1", "ok-1"]);
    expect(edge.registry.listModules("ok-1").map((m) => m.moduleId)).toEqual(["filter"]);
    expect(edge.registry.listModules("edge1").map((m) => m.moduleId)).toEqual(["$edgeHub"]);
    const skipped = edge.log.events.filter((e) => e.event === "scope-record-skipped");
    expect(skipped).toHaveLength(bad.length + 4);
    for (const s of skipped) expect(s.fields.reason).toMatch(/\S/);
    expect(skipped.map((s) => s.fields.reason)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^deviceId is not 1-128 characters/),
        "status is not enabled or disabled",
        "symmetricKey.primaryKey is not base64 of 16-64 bytes",
        "its device is not in the scope",
        "the scope has this deviceId twice",
      ]),
    );
    expect(edge.log.events.find((e) => e.event === "scope-synced")?.fields.skipped).toBe(bad.length + 4);
  });

  it("keeps __proto__, constructor and prototype as ordinary ids and never reads a record through a prototype", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    // A record whose fields sit only under "__proto__" has none of its own: skipped.
    const hollow = `{"deviceId":"hollow","__proto__":{"status":"enabled","authentication":{"type":"none"}}}`;
    const auth = JSON.stringify({ ...device("proto-auth"), authentication: "X" }).replace(
      '"authentication":"X"',
      '"authentication":{"__proto__":{"type":"none"}}',
    );
    const page = `{"devices":[${[
      edgeDevice("edge1"),
      device("__proto__"),
      device("constructor"),
      device("prototype"),
    ]
      .map((d) => JSON.stringify(d))
      .join(",")},${hollow},${auth}],"modules":[${JSON.stringify(module("__proto__", "__proto__"))}]}`;
    parent.answer = (_n, _call, res) => json(res, page);
    expect(await edge.sync.sync()).toBe(true);
    expect(edge.ids()).toEqual(["__proto__", "constructor", "edge1", "prototype"]);
    expect(edge.registry.getDevice("__proto__")?.authentication.symmetricKey?.primaryKey).toBe(KEY);
    expect(edge.registry.getModule("__proto__", "__proto__")?.moduleId).toBe("__proto__");
    expect(edge.registry.getDevice("hollow")).toBeUndefined();
    expect(edge.registry.getDevice("proto-auth")).toBeUndefined();
    expect(pollution()).toEqual([]);
  });

  it("fails, applying nothing, when the scope does not contain this hub", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    parent.answer = (_n, _call, res) => json(res, { devices: [device("someone")], modules: [] });
    expect(await edge.sync.sync()).toBe(false);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
  });
});

describe("scope sync from a hostile parent: the walk", () => {
  it(`stops a parent that pages forever after MAX_SCOPE_PAGES (${MAX_SCOPE_PAGES}) and applies nothing`, async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    parent.answer = (n, _call, res) =>
      json(res, {
        devices: n === 0 ? [edgeDevice("edge1"), device(`d-${n}`)] : [device(`d-${n}`)],
        modules: [],
        continuationLink: `page-${n + 1}`,
      });
    expect(await edge.sync.sync()).toBe(false);
    expect(parent.calls).toHaveLength(MAX_SCOPE_PAGES);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual([expect.stringContaining("MAX_SCOPE_PAGES")]);
  });

  it(`refuses a scope of more than MAX_SCOPE_RECORDS (${MAX_SCOPE_RECORDS}) records over the walk and applies nothing`, async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const half = (tag: string) =>
      Array.from({ length: MAX_SCOPE_RECORDS / 2 }, (_, i) =>
        device(`${tag}-${i}`, { authentication: { type: "none" } }),
      );
    // Each edge's page is under the cap; the walk's sum is over it.
    parent.answer = (_n, call, res) =>
      call.body?.authChain === "edge1"
        ? json(res, {
            devices: [edgeDevice("edge1"), edgeDevice("edge2", "edge1"), ...half("a")],
            modules: [],
          })
        : json(res, { devices: [edgeDevice("edge2", "edge1"), ...half("b")], modules: [] });
    expect(await edge.sync.sync()).toBe(false);
    expect(parent.chains).toEqual(["edge1", "edge2;edge1"]);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual([expect.stringContaining("MAX_SCOPE_RECORDS")]);
  });

  it("ends the sync when a continuationLink comes back within one edge's sequence, and applies nothing", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    parent.answer = (n, _call, res) => {
      // A bound for code that follows loops: it would ask forever.
      if (n >= 50) return void res.writeHead(400).end();
      json(res, {
        devices: [edgeDevice("edge1"), device(`d-${n}`)],
        modules: [],
        continuationLink: `p${n % 2}`,
      });
    };
    expect(await edge.sync.sync()).toBe(false);
    expect(parent.calls).toHaveLength(3);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual(["continuationLink loops to a page already read"]);
  });

  it("refuses a continuationLink that is not a bounded printable string", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    for (const link of ["x".repeat(2049), "a\r\nX-Injected: 1", { href: "p2" }, 42]) {
      parent.calls.length = 0;
      parent.answer = (_n, _call, res) =>
        json(res, { devices: [edgeDevice("edge1"), device("d")], modules: [], continuationLink: link });
      expect(await edge.sync.sync(), JSON.stringify(link).slice(0, 40)).toBe(false);
      expect(parent.calls).toHaveLength(1);
      expect(edge.ids()).toEqual(["edge1", "keep-me"]);
      expect(edge.reasons().at(-1)).toMatch(/^continuationLink is not up to 2048 printable characters/);
    }
  });

  it("walks each edge once, whatever cycle the parent draws, and no deeper than MAX_NESTING edges", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    // edge1 -> e2 -> e3 -> ... -> e8, and every page also names edge1 and e2 again.
    parent.answer = (_n, call, res) => {
      const target = call.body?.authChain.split(";")[0] as string;
      const depth = target === "edge1" ? 1 : Number(target.slice(1));
      json(res, {
        devices: [
          edgeDevice(target),
          edgeDevice(`e${depth + 1}`, target),
          edgeDevice("edge1"),
          edgeDevice("e2", "edge1"),
        ],
        modules: [],
      });
    };
    expect(await edge.sync.sync(), JSON.stringify(edge.reasons())).toBe(true);
    expect(parent.chains).toEqual([
      "edge1",
      "e2;edge1",
      "e3;e2;edge1",
      "e4;e3;e2;edge1",
      "e5;e4;e3;e2;edge1",
    ]);
    expect(parent.refused).toEqual([]);
    // e6 is in e5's page (a record), but its own scope is past the nesting cap.
    expect(edge.ids()).toEqual(["e2", "e3", "e4", "e5", "e6", "edge1"]);
    expect(edge.log.events.filter((e) => e.event === "scope-too-deep").map((e) => e.fields)).toEqual([
      { deviceId: "e6", maxNesting: MAX_NESTING },
    ]);
  });

  it("fails the whole walk, applying nothing, when a child edge's sequence fails", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    parent.answer = (_n, call, res) =>
      call.body?.authChain === "edge1"
        ? json(res, {
            devices: [edgeDevice("edge1"), edgeDevice("edge2", "edge1"), device("new")],
            modules: [],
          })
        : json(res, "{not json");
    expect(await edge.sync.sync()).toBe(false);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual(["scope call answered with something other than JSON"]);
  });

  it(`cuts off a page over MAX_SCOPE_PAGE_BYTES (${MAX_SCOPE_PAGE_BYTES}) and applies nothing`, async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const total = 4 * MAX_SCOPE_PAGE_BYTES;
    let sent = 0;
    parent.answer = (_n, _call, res) => {
      const chunk = Buffer.from(`${JSON.stringify(device("filler"))},`.repeat(256));
      res.writeHead(200, { "content-type": "application/json" });
      res.write(`{"devices":[${JSON.stringify(edgeDevice("edge1"))},`);
      const more = () => {
        while (sent < total && !res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", more);
        }
        if (!res.destroyed) res.end(`${JSON.stringify(device("last"))}],"modules":[]}`);
      };
      more();
    };
    expect(await edge.sync.sync()).toBe(false);
    // The edge hung up once past the cap (not retried); what was sent by then is the cap and the socket buffers.
    expect(parent.calls).toHaveLength(1);
    expect(sent).toBeLessThan(2 * MAX_SCOPE_PAGE_BYTES);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual([expect.stringContaining("MAX_SCOPE_PAGE_BYTES")]);
  });
});

describe("scope sync from a hostile parent: the legacy form's links", () => {
  /** A parent without the nested route, and an edge that synced from it once. */
  async function legacyParent() {
    const parent = await RawHttpsParent.start();
    parent.nestedRoute = 404;
    const edge = await syncedEdge(parent);
    expect(edge.sync.form).toBe("legacy");
    return { parent, edge };
  }

  it("follows a link to the same call however the parent escapes it, as the path it checked", async () => {
    const { parent, edge } = await legacyParent();
    const escaped = `${scopePath("edge1").replace("$", "%24")}?continuationToken=MQ`;
    const dotted = `/devices/edge1/modules/$edgeHub/x/../devicesAndModulesInDeviceScope?continuationToken=Mg#frag`;
    parent.answer = (n, _call, res) =>
      json(res, {
        devices: [n === 0 ? edgeDevice("edge1") : device(`d-${n}`)],
        modules: [],
        continuationLink: [escaped, dotted, null][n],
      });
    expect(await edge.sync.sync(), JSON.stringify([edge.reasons(), parent.refused])).toBe(true);
    expect(parent.calls.slice(1).map((c) => c.url)).toEqual([
      escaped,
      `${scopePath("edge1")}?continuationToken=Mg`,
    ]);
    expect(edge.ids()).toEqual(["d-1", "d-2", "edge1"]);
  });

  it("ends the sync when a link comes back, and never follows one off the parent or to another call", async () => {
    const { parent, edge } = await legacyParent();
    const other = await RawHttpsParent.start();
    const path = `${scopePath("edge1")}?deviceCount=500&continuationToken=MQ`;
    for (const [link, reason] of [
      [path, "continuationLink loops to a page already read"],
      [`https://localhost:${other.port}${path}`, /^continuationLink is not a path of this scope call/],
      [`//localhost:${other.port}${path}`, /^continuationLink is not a path of this scope call/],
      [`/devices/edge1/modules/$edgeHub/twin?x=1`, /^continuationLink is not a path of this scope call/],
      [`${scopePath("edge1")}/../../../../other?x=1`, /^continuationLink is not a path of this scope call/],
      [scopePath("edge1"), /^continuationLink is not a path of this scope call/],
      [`${path}\r\nX-Injected: 1`, /^continuationLink is not a path of this scope call/],
    ] as const) {
      parent.calls.length = 0;
      parent.answer = (n, _call, res) =>
        json(res, { devices: [edgeDevice("edge1"), device(`d-${n}`)], modules: [], continuationLink: link });
      expect(await edge.sync.sync(), link).toBe(false);
      expect(parent.calls.length).toBeLessThanOrEqual(2);
      expect(parent.refused, link).toEqual([]);
      expect(other.calls).toEqual([]);
      expect(edge.ids()).toEqual(["edge1", "keep-me"]);
      expect(edge.reasons().at(-1)).toMatch(reason);
    }
  });
});
