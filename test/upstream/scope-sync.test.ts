/**
 * The scope sync against a hostile parent: a real HTTPS server that checks the edge's
 * token as a parent does and answers with what a real root hub never sends. Every sync
 * either applies the valid records of a whole scope, or fails and leaves the cached one.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Device, Registry } from "../../ts/auth/registry.js";
import { SecretBox } from "../../ts/auth/secret-box.js";
import { loadConfig, type ParentConfig, type ParentConfigInput } from "../../ts/config/config.js";
import { scopePath } from "../../ts/service/scope.js";
import { deviceJson, moduleJson } from "../../ts/service/shapes.js";
import { ParentCredentials } from "../../ts/upstream/credentials.js";
import { EdgeHubModule } from "../../ts/upstream/edgehub-module.js";
import {
  MAX_SCOPE_PAGE_BYTES,
  MAX_SCOPE_PAGES,
  MAX_SCOPE_RECORDS,
  ScopeSync,
} from "../../ts/upstream/scope-sync.js";
import { pollution } from "../helpers/adversarial.js";
import { selfSigned } from "../helpers/certs.js";
import { edgeIdentity, startRoot } from "../helpers/edge.js";
import { openStore, tempDir } from "../helpers/fixtures.js";
import { recordingLogger } from "../helpers/hub.js";
import { RawHttpsParent } from "../helpers/raw-https-parent.js";

const KEY = Buffer.alloc(32, 7).toString("base64");

/** A device as a real root answers it (`deviceJson`), enabled, with SAS keys. */
function device(deviceId: string, over: Partial<Device> = {}): Record<string, unknown> {
  return deviceJson(
    {
      deviceId,
      generationId: "638000000000000000",
      etag: "AAAAAAAAAAE=",
      status: "enabled",
      authentication: { type: "sas", symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
      capabilities: { iotEdge: false },
      parentScopes: [],
      ...over,
    },
    false,
  );
}

function edgeDevice(edgeId: string): Record<string, unknown> {
  return device(edgeId, {
    capabilities: { iotEdge: true },
    deviceScope: `ms-azure-iot-edge://${edgeId}-638000000000000000`,
  });
}

function module(deviceId: string, moduleId: string): Record<string, unknown> {
  return moduleJson(
    {
      deviceId,
      moduleId,
      generationId: "638000000000000001",
      etag: "AAAAAAAAAAE=",
      authentication: { type: "sas", symmetricKey: { primaryKey: KEY, secondaryKey: KEY } },
    },
    false,
  );
}

function json(res: import("node:http").ServerResponse, body: unknown): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(200, { "content-type": "application/json" }).end(text);
}

/** An edge's scope sync (real store, sealed registry) whose parent is `parent` (or a real root's parent config). */
async function edgeOf(parent: RawHttpsParent | ParentConfigInput) {
  const dir = await tempDir();
  let input: ParentConfigInput;
  if (parent instanceof RawHttpsParent) {
    await writeFile(join(dir, "parent-ca.pem"), parent.ca);
    input = {
      hostname: "localhost",
      httpsPort: parent.port,
      deviceId: parent.edgeId,
      sharedAccessKey: parent.key,
      caFile: join(dir, "parent-ca.pem"),
    };
  } else input = parent;
  const config = loadConfig({ hostname: "127.0.0.1", dataDir: dir, parent: input }).parent as ParentConfig;
  const store = await openStore(join(dir, "store"));
  const registry = await Registry.open(store, await SecretBox.fromKeyFile(join(dir, "secrets.key")));
  const log = recordingLogger();
  // The scope call carries the `$edgeHub` token: the raw parent's key is that module's; a
  // real root's is fetched as the upstream fetches it.
  const credentials = new ParentCredentials(config);
  if (parent instanceof RawHttpsParent) credentials.useModuleKey(() => parent.key);
  else {
    const module = new EdgeHubModule(
      config,
      credentials,
      await SecretBox.fromKeyFile(join(dir, "m.key")),
      dir,
      log,
    );
    await module.fetch();
    credentials.useModuleKey(() => module.keys?.primaryKey);
  }
  const sync = new ScopeSync(config, credentials, registry, log);
  const ids = () =>
    registry
      .listDevices()
      .map((d) => d.deviceId)
      .sort();
  const reasons = () => log.events.filter((e) => e.event === "scope-sync-failed").map((e) => e.fields.reason);
  return { sync, registry, log, ids, reasons };
}

/** Syncs a first, good scope (the edge and `keep-me`), so a failed sync has something to leave alone. */
async function syncedEdge(parent: RawHttpsParent) {
  const edge = await edgeOf(parent);
  parent.answer = (_n, _url, res) =>
    json(res, { devices: [edgeDevice("edge1"), device("keep-me")], modules: [] });
  expect(await edge.sync.sync()).toBe(true);
  expect(edge.ids()).toEqual(["edge1", "keep-me"]);
  parent.calls.length = 0;
  return edge;
}

describe("scope sync from a real root hub", () => {
  it("takes every record a real root sends, over several pages, skipping none", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const edge1 = root.registry.getDevice("edge1") as Device;
    const cert = await selfSigned("by-thumbprint");
    await root.registry.createDevice({
      deviceId: "by-thumbprint",
      deviceScope: edge1.deviceScope,
      authentication: {
        type: "selfSigned",
        x509Thumbprint: { primaryThumbprint: cert.thumbprint, secondaryThumbprint: null },
      },
    });
    await root.registry.createDevice({
      deviceId: "by-ca",
      deviceScope: edge1.deviceScope,
      authentication: { type: "certificateAuthority" },
    });
    await root.registry.createDevice({
      deviceId: "off",
      deviceScope: edge1.deviceScope,
      status: "disabled",
      statusReason: "stolen",
    });
    const edge2 = await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [edge1.deviceScope as string],
    });
    await root.registry.createModule({ deviceId: "edge2", moduleId: "filter", managedBy: "IotEdge" });
    // Past one page of 500: the root's own continuationLink is followed.
    for (let i = 0; i < 500; i++)
      await root.registry.createDevice({ deviceId: `leaf-${i}`, deviceScope: edge2.deviceScope });
    const edge = await edgeOf(parent);
    expect(await edge.sync.sync()).toBe(true);
    const synced = edge.log.events.find((e) => e.event === "scope-synced")?.fields;
    expect(synced).toMatchObject({ devices: 505, modules: 5, skipped: 0 });
    expect(edge.registry.listDevices().sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1))).toEqual(
      root.registry.listDevices().sort((a, b) => (a.deviceId < b.deviceId ? -1 : 1)),
    );
    expect(edge.registry.getModule("edge2", "filter")).toEqual(root.registry.getModule("edge2", "filter"));
  });
});

describe("scope sync from a hostile parent", () => {
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
    parent.answer = (_n, _url, res) =>
      json(res, {
        devices: [edgeDevice("edge1"), device("ok-1"), ...bad],
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
    expect(skipped).toHaveLength(bad.length + 3);
    for (const s of skipped) expect(s.fields.reason).toMatch(/\S/);
    expect(skipped.map((s) => s.fields.reason)).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^deviceId is not 1-128 characters/),
        "status is not enabled or disabled",
        "symmetricKey.primaryKey is not base64 of 16-64 bytes",
        "its device is not in the scope",
      ]),
    );
    expect(edge.log.events.find((e) => e.event === "scope-synced")?.fields.skipped).toBe(bad.length + 3);
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
    parent.answer = (_n, _url, res) => json(res, page);
    expect(await edge.sync.sync()).toBe(true);
    expect(edge.ids()).toEqual(["__proto__", "constructor", "edge1", "prototype"]);
    expect(edge.registry.getDevice("__proto__")?.authentication.symmetricKey?.primaryKey).toBe(KEY);
    expect(edge.registry.getModule("__proto__", "__proto__")?.moduleId).toBe("__proto__");
    expect(edge.registry.getDevice("hollow")).toBeUndefined();
    expect(edge.registry.getDevice("proto-auth")).toBeUndefined();
    expect(pollution()).toEqual([]);
  });

  it(`stops a parent that pages forever after MAX_SCOPE_PAGES (${MAX_SCOPE_PAGES}) and applies nothing`, async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const base = scopePath("edge1");
    parent.answer = (n, _url, res) =>
      json(res, {
        devices: n === 0 ? [edgeDevice("edge1"), device(`d-${n}`)] : [device(`d-${n}`)],
        modules: [],
        continuationLink: n < 10_000 ? `${base}?deviceCount=1&continuationToken=${n + 1}` : null,
      });
    expect(await edge.sync.sync()).toBe(false);
    expect(parent.calls).toHaveLength(MAX_SCOPE_PAGES);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual([expect.stringContaining("MAX_SCOPE_PAGES")]);
  });

  it(`refuses a scope of more than MAX_SCOPE_RECORDS (${MAX_SCOPE_RECORDS}) records and applies nothing`, async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const many = Array.from({ length: MAX_SCOPE_RECORDS }, (_, i) =>
      device(`d-${i}`, { authentication: { type: "none" } }),
    );
    parent.answer = (_n, _url, res) => json(res, { devices: [edgeDevice("edge1"), ...many], modules: [] });
    expect(await edge.sync.sync()).toBe(false);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual([expect.stringContaining("MAX_SCOPE_RECORDS")]);
  });

  it("ends the sync when a continuationLink comes back, and applies nothing", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const again = `${scopePath("edge1")}?deviceCount=500&continuationToken=MQ`;
    for (const loop of ["to the previous page", "to the first page"]) {
      parent.calls.length = 0;
      parent.answer = (n, url, res) => {
        // A bound for code that follows loops: it would ask forever.
        if (n >= 50) return void res.writeHead(500).end();
        const link = loop === "to the first page" ? (parent.calls[0] as string) : again;
        json(res, {
          devices: [edgeDevice("edge1"), device(`d-${url.length}-${n}`)],
          modules: [],
          continuationLink: link,
        });
      };
      expect(await edge.sync.sync(), loop).toBe(false);
      expect(parent.calls, loop).toHaveLength(loop === "to the first page" ? 1 : 2);
      expect(edge.ids()).toEqual(["edge1", "keep-me"]);
      expect(edge.reasons().at(-1)).toBe("continuationLink loops to a page already read");
    }
  });

  it("follows a link to the same call however the parent escapes it, as the path it checked", async () => {
    const parent = await RawHttpsParent.start();
    const edge = await edgeOf(parent);
    const escaped = `${scopePath("edge1").replace("$", "%24")}?continuationToken=MQ`;
    const dotted = `/devices/edge1/modules/$edgeHub/x/../devicesAndModulesInDeviceScope?continuationToken=Mg#frag`;
    parent.answer = (n, _url, res) =>
      json(res, {
        devices: [n === 0 ? edgeDevice("edge1") : device(`d-${n}`)],
        modules: [],
        continuationLink: [escaped, dotted, null][n],
      });
    expect(await edge.sync.sync(), JSON.stringify([edge.reasons(), parent.refused])).toBe(true);
    expect(parent.calls.slice(1)).toEqual([escaped, `${scopePath("edge1")}?continuationToken=Mg`]);
    expect(edge.ids()).toEqual(["d-1", "d-2", "edge1"]);
  });

  it("never follows a continuationLink off the parent or to another call", async () => {
    const parent = await RawHttpsParent.start();
    const other = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const path = `${scopePath("edge1")}?deviceCount=500&continuationToken=MQ`;
    for (const link of [
      `https://localhost:${other.port}${path}`,
      `//localhost:${other.port}${path}`,
      `/devices/edge1/modules/$edgeHub/twin?x=1`,
      `${scopePath("edge1")}/../../../../other?x=1`,
      scopePath("edge1"),
      `${path}\r\nX-Injected: 1`,
      { href: path },
    ]) {
      parent.calls.length = 0;
      parent.answer = (n, _url, res) =>
        json(res, { devices: [edgeDevice("edge1"), device(`d-${n}`)], modules: [], continuationLink: link });
      expect(await edge.sync.sync(), JSON.stringify(link)).toBe(false);
      expect(parent.calls).toHaveLength(1);
      expect(parent.refused, JSON.stringify(link)).toEqual([]);
      expect(other.calls).toEqual([]);
      expect(edge.ids()).toEqual(["edge1", "keep-me"]);
      expect(edge.reasons().at(-1)).toMatch(/^continuationLink is not a path of this scope call/);
    }
  });

  it(`cuts off a page over MAX_SCOPE_PAGE_BYTES (${MAX_SCOPE_PAGE_BYTES}) and applies nothing`, async () => {
    const parent = await RawHttpsParent.start();
    const edge = await syncedEdge(parent);
    const total = 4 * MAX_SCOPE_PAGE_BYTES;
    let sent = 0;
    parent.answer = (_n, _url, res) => {
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
    // The edge hung up once past the cap; what was sent by then is the cap and the socket buffers.
    expect(sent).toBeLessThan(2 * MAX_SCOPE_PAGE_BYTES);
    expect(edge.ids()).toEqual(["edge1", "keep-me"]);
    expect(edge.reasons()).toEqual([expect.stringContaining("MAX_SCOPE_PAGE_BYTES")]);
  });
});
