/**
 * The edge's `$edgeHub` credential (docs/upstream-forms.md §1, §7, §9): fetched from the
 * parent with the edge device's own credential, sealed in the data dir, refetched when the
 * parent regenerates it, and the one credential of every upstream login, whose CONNECT
 * matches the forms of test/fixtures/upstream-forms/connect.json.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseSasToken, signedByAny } from "../../ts/auth/sas.js";
import type { EdgeHub } from "../../ts/index.js";
import { MODULE_KEYS_FILE } from "../../ts/upstream/edgehub-module.js";
import { childOf, edgeIdentity, rootEvents, startEdge, startRoot, synced } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { recordingLogger, stopHub } from "../helpers/hub.js";
import { connectedRaw, publishSeq } from "../helpers/mqtt-raw.js";
import { RawParent } from "../helpers/raw-parent.js";

const edgeHubKeys = (root: EdgeHub, edge = "edge1") =>
  root.registry.getModule(edge, "$edgeHub")?.authentication.symmetricKey as {
    primaryKey: string;
    secondaryKey: string;
  };

/** A leaf's message reaches the root through `edge`. */
async function leafMessageArrives(root: EdgeHub, edge: EdgeHub, leaf: string, key: string, body: string) {
  const c = await connectedRaw(edge.ports.mqtts, edge.caCertificate, leaf, key);
  expect(await publishSeq(c, leaf, 0, Buffer.from(body))).toBe(true);
  await eventually(`${body} at the root`, async () =>
    (await rootEvents(root)).some((m) => m.body.toString() === body),
  );
  c.end();
}

describe("the edge's $edgeHub credential", () => {
  it("fetches the $edgeHub keys with the device key, seals them on disk, and logs in as edge1/$edgeHub", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const dir = await tempDir();
    const edge = await startEdge(dir, parent);
    await synced(edge);
    const keys = edgeHubKeys(root);
    expect(edge.upstream?.edgeHubModule?.keys).toMatchObject(keys);
    // On disk, sealed: neither key appears, in base64 or raw.
    const file = await readFile(join(dir, MODULE_KEYS_FILE));
    for (const k of [keys.primaryKey, keys.secondaryKey]) {
      expect(file.includes(Buffer.from(k))).toBe(false);
      expect(file.includes(Buffer.from(k, "base64"))).toBe(false);
    }
    await leafMessageArrives(root, edge, "leaf1", key, "via $edgeHub");
  });

  it("after a restart, logs in with the sealed keys without reaching the module identity API", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const dir = await tempDir();
    const first = await startEdge(dir, parent);
    await synced(first);
    await stopHub(first);
    // The HTTPS side of the parent is gone (a port nothing listens on): no fetch can succeed,
    // the MQTT side is there. Messages still go up with the keys from disk.
    const log = recordingLogger();
    const edge = await startEdge(dir, { ...parent, httpsPort: 1 }, {}, log);
    await eventually("edge online", () => edge.upstream?.online === true);
    expect(log.events.some((e) => e.event === "edgehub-keys-fetched")).toBe(false);
    await leafMessageArrives(root, edge, "leaf1", key, "sealed keys");
  });

  it("waits for the keys before logging in: offline at start, up once the parent answers", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const dir = await tempDir();
    const raw = await RawParent.start();
    // MQTT goes to a raw parent that records CONNECTs; the module identity API is not reachable.
    const log = recordingLogger();
    const edge = await startEdge(dir, { ...parent, port: raw.port, httpsPort: 1 }, {}, log);
    await eventually("a failed fetch", () => log.events.some((e) => e.event === "edgehub-keys-fetch-failed"));
    expect(raw.connects).toEqual([]);
    expect(edge.upstream?.online).toBe(false);
  });

  it("refetches the keys when the parent regenerates them, and reconnects with the new ones", async () => {
    const root = await startRoot(await tempDir());
    const parent = await edgeIdentity(root, "edge1");
    const key = await childOf(root, "edge1", "leaf1");
    const edge = await startEdge(await tempDir(), parent);
    await synced(edge);
    const old = edgeHubKeys(root);
    await root.registry.updateModule({
      deviceId: "edge1",
      moduleId: "$edgeHub",
      authentication: { type: "sas" },
    });
    const fresh = edgeHubKeys(root);
    expect(fresh.primaryKey).not.toBe(old.primaryKey);
    // The root dropped the old login; the new one with the old keys is refused: the edge refetches.
    await eventually(
      "new keys at the edge",
      () => edge.upstream?.edgeHubModule?.keys?.primaryKey === fresh.primaryKey,
    );
    await eventually("edge online again", () => edge.upstream?.online === true);
    await leafMessageArrives(root, edge, "leaf1", key, "after regeneration");
  });
});

interface Form {
  id: string;
  example: string;
}

/** The connect.json fixture forms by id, the example hub name replaced by the test's. */
async function connectForms(): Promise<Map<string, string>> {
  const doc = JSON.parse(
    await readFile(new URL("../fixtures/upstream-forms/connect.json", import.meta.url), "utf8"),
  ) as { forms: Form[] };
  return new Map(
    doc.forms
      .filter((f) => typeof f.example === "string")
      .map((f) => [f.id, f.example.replaceAll("myhub.azure-devices.net", "localhost")]),
  );
}

/** A username split as the SDK builds it: `{host}/{clientId}/`, then its query keys in order. */
function usernameParts(username: string): { prefix: string; keys: string[]; params: URLSearchParams } {
  const at = username.indexOf("/?");
  const params = new URLSearchParams(username.slice(at + 2));
  return { prefix: username.slice(0, at + 1), keys: [...params.keys()], params };
}

describe("the wire CONNECT of every kind of link", () => {
  it("matches Microsoft's forms: client id, username (api-version, DeviceClientType, auth-chain) and the $edgeHub password", async () => {
    const rootDir = await tempDir();
    const root = await startRoot(rootDir);
    const parent = await edgeIdentity(root, "edge1");
    await childOf(root, "edge1", "leaf1");
    await root.registry.createModule({ deviceId: "edge1", moduleId: "mod1" });
    const edge2 = await root.registry.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [root.registry.getDevice("edge1")?.deviceScope as string],
    });
    await root.registry.createModule({ deviceId: "edge2", moduleId: "mod2" });
    await root.registry.createDevice({ deviceId: "leaf2", deviceScope: edge2.deviceScope });
    // MQTT to a raw parent serving the root's certificate (records every CONNECT); HTTPS (the
    // module identity and scope calls) to the strict root.
    const raw = await RawParent.start({ hubDir: rootDir });
    const edge = await startEdge(await tempDir(), { ...parent, port: raw.port });
    await synced(edge);
    const kinds: Record<string, { form: string; clientId: string; chain: string }> = {
      own: { form: "username.edgehub", clientId: "edge1/$edgeHub", chain: "edge1/$edgeHub;edge1" },
      module: { form: "username.module", clientId: "edge1/mod1", chain: "edge1/mod1;edge1" },
      child: { form: "username.device", clientId: "leaf1", chain: "leaf1;edge1" },
      "child edge": { form: "", clientId: "edge2", chain: "edge2;edge1" },
      "nested module": {
        form: "username.nested-module",
        clientId: "edge2/mod2",
        chain: "edge2/mod2;edge2;edge1",
      },
      "nested edgeHub": {
        form: "username.nested-edgehub",
        clientId: "edge2/$edgeHub",
        chain: "edge2/$edgeHub;edge2;edge1",
      },
      "nested child": { form: "", clientId: "leaf2", chain: "leaf2;edge2;edge1" },
    };
    // Each identity's link opens when its client listens for methods here.
    for (const { clientId } of Object.values(kinds))
      if (clientId !== "edge1/$edgeHub") edge.upstream?.methodRelay?.listen(clientId);
    await eventually("a CONNECT of every kind", () =>
      Object.values(kinds).every(({ clientId }) => raw.connects.some((c) => c.clientId === clientId)),
    );
    const forms = await connectForms();
    const fixtureUser = usernameParts(forms.get("username.edgehub") as string);
    const edgeHubKey = edgeHubKeys(root).primaryKey;
    for (const [kind, want] of Object.entries(kinds)) {
      const connect = raw.connects.find((c) => c.clientId === want.clientId);
      const user = usernameParts(connect?.username ?? "");
      expect(user.prefix, kind).toBe(`localhost/${want.clientId}/`);
      // The SDK's order; api-version as the fixture's example; DeviceClientType ends EdgeHub/{v}.
      expect(user.keys, kind).toEqual(fixtureUser.keys);
      expect(user.params.get("api-version"), kind).toBe(fixtureUser.params.get("api-version"));
      expect(user.params.get("DeviceClientType"), kind).toMatch(/ EdgeHub\/\d+\.\d+\.\d+$/);
      expect(user.params.get("auth-chain"), kind).toBe(want.chain);
      if (want.form === "username.edgehub")
        expect(connect?.username?.split("&auth-chain=")[1]).toBe(
          (forms.get(want.form) as string).split("&auth-chain=")[1],
        );
      else if (want.form !== "") {
        // The fixture's example chain, escaped as Uri.EscapeDataString escapes it.
        const example = forms.get(want.form) as string;
        const chain = example.includes("auth-chain=")
          ? usernameParts(example).params.get("auth-chain")
          : example;
        expect(user.params.get("auth-chain"), kind).toBe(chain);
      }
      // The password: the same `$edgeHub` token form for every identity (password.in-scope).
      const token = parseSasToken(connect?.password ?? "");
      const fixtureToken = forms.get("password.in-scope") as string;
      const fixtureSr = /sr=([^&]+)/.exec(fixtureToken)?.[1];
      expect(/sr=([^&]+)/.exec(connect?.password ?? "")?.[1], kind).toBe(fixtureSr);
      expect(token.keyName, kind).toBeUndefined();
      expect(signedByAny(token, [edgeHubKey]), kind).toBe(true);
    }
  });
});
