/**
 * Upstream conformance (issue 12): every wire form edgehub sends toward Azure IoT Hub,
 * captured from real edge hubs (edge1 under the parent, edge2 under edge1) with official
 * SDK clients (test/helpers/conformance-site.ts), checked against the fixture of that form
 * (test/fixtures/upstream-forms/*.json, each written from Microsoft's source and citing it).
 *
 * Driven by the fixtures: every form whose verdict is "same" has a checker here keyed by
 * `{area}/{id}`, and fails without one; a "differs" form says in its `note` why the
 * difference is intended or what is missing, an "unknown" one what is unknown. Examples
 * compare literally after normalising only what must vary: `sig`, `se`, `$rid`, the
 * DeviceClientType text, page sizes, packet ids.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { parseSasToken, signedByAny } from "../../ts/auth/sas.js";
import { BODIES, type Captured, driveSite, HUB } from "../helpers/conformance-site.js";

interface Form {
  id: string;
  example: unknown;
  verdict: "same" | "differs" | "unknown";
  note?: string;
}

const DIR = path.join(import.meta.dirname, "..", "fixtures", "upstream-forms");
const FORMS = new Map<string, Form>(
  readdirSync(DIR)
    .filter((f) => f.endsWith(".json"))
    .flatMap((file) =>
      (JSON.parse(readFileSync(path.join(DIR, file), "utf8")) as { forms: Form[] }).forms.map(
        (f) => [`${file.replace(/\.json$/, "")}/${f.id}`, f] as const,
      ),
    ),
);
const example = (key: string): unknown => FORMS.get(key)?.example;
const exampleText = (key: string): string => String(example(key));

/** What must vary between runs, replaced by a placeholder on both sides. */
const norm = (s: string) =>
  s
    .replace(/sig=[^&]+/, "sig=<sig>")
    .replace(/se=\d+/, "se=<se>")
    .replace(/\$rid=[^&/]*/, "$rid=<rid>")
    .replace(/DeviceClientType=[^&]*/, "DeviceClientType=<pi>")
    .replace(/deviceCount=\d+/, "deviceCount=<n>");

let site: Captured | undefined;
function captured(): Captured {
  if (!site) throw new Error("the site did not run (see the first test)");
  return site;
}

const connectOf = (clientId: string) => {
  const c = captured().mqtt.connects.find((x) => x.clientId === clientId && x.username !== undefined);
  if (!c) throw new Error(`no CONNECT of ${clientId}`);
  return c;
};
const params = (username: string) => new URLSearchParams(username.slice(username.indexOf("/?") + 2));
/** Accepted links (leaf3's are refused). */
const accepted = () => captured().mqtt.connects.filter((c) => c.clientId !== "leaf3");
/** Telemetry PUBLISHes, by body. */
const telemetry = () =>
  captured().mqtt.publishes.filter((p) =>
    /^devices\/[^/]+\/(modules\/[^/]+\/)?messages\/events\//.test(p.topic),
  );
const sentWith = (body: string) => {
  const p = telemetry().filter((t) => t.payload.toString() === body);
  expect(p, body).toHaveLength(1);
  return p[0] as (typeof p)[0];
};
/** A telemetry topic's bag keys, decoded, in order. */
const bagKeys = (topic: string) => {
  const bag = topic.split("/messages/events/")[1]?.replace(/\/$/, "") ?? "";
  return bag === "" ? [] : bag.split("&").map((kv) => decodeURIComponent(kv.split("=")[0] as string));
};
const subs = (cmd: "subscribe" | "unsubscribe", clientId: string) =>
  captured()
    .mqtt.received.filter((r) => r.cmd === cmd && r.clientId === clientId)
    .flatMap((r) => r.topics);
/** A header's value as sent, its name matched without case. */
const header = (raw: string[], name: string): string | undefined => {
  const at = raw.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === name.toLowerCase());
  return at < 0 ? undefined : raw[at + 1];
};
/** The nested scope walk's POSTs (not the single-identity ones). */
const scopePosts = () =>
  captured().https.requests.filter(
    (r) => r.method === "POST" && r.url.includes("/devicesAndModulesInTargetDeviceScope?"),
  );
/** Requests to the HTTPS parent by method and path prefix. */
const httpsAt = (method: string, path: string) =>
  captured().https.requests.filter((r) => r.method === method && decodeURIComponent(r.url).startsWith(path));
/** A request line as the fixtures write it, the path decoded. */
const line = (r: { method: string; url: string } | undefined) =>
  `${r?.method} ${decodeURIComponent(r?.url ?? "")}`;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The username check of a form whose example is a whole username. */
function usernameIs(key: string): void {
  const want = exampleText(key);
  const clientId = want.slice(`${HUB}/`.length, want.indexOf("/?"));
  const got = connectOf(clientId).username ?? "";
  expect(norm(got)).toBe(norm(want.replace("<urlencoded product info>", "<pi>")));
  // The known part of Microsoft's DeviceClientType: it ends `EdgeHub/{version}`.
  expect(params(got).get("DeviceClientType")).toMatch(/ EdgeHub\/\S+$/);
}

/** One checker per form with verdict "same", keyed `{area}/{id}`. */
const CHECKERS: Record<string, () => void> = {
  // ---- connect.json
  "connect/client-id.edgehub": () =>
    expect(connectOf(exampleText("connect/client-id.edgehub"))).toBeDefined(),
  "connect/client-id.module": () => expect(connectOf(exampleText("connect/client-id.module"))).toBeDefined(),
  "connect/client-id.device": () => expect(connectOf(exampleText("connect/client-id.device"))).toBeDefined(),
  "connect/username.edgehub": () => usernameIs("connect/username.edgehub"),
  "connect/username.module": () => usernameIs("connect/username.module"),
  "connect/username.device": () => usernameIs("connect/username.device"),
  "connect/username.nested-module": () => usernameIs("connect/username.nested-module"),
  "connect/username.nested-edgehub": () => {
    const chain = exampleText("connect/username.nested-edgehub");
    expect(params(connectOf(chain.split(";")[0] as string).username ?? "").get("auth-chain")).toBe(chain);
  },
  "connect/auth-chain.rules": () => {
    // The example's chain as sent for leaf2, and the rule for every login: first the target, then the actor.
    const want = exampleText("connect/auth-chain.rules");
    expect(params(connectOf("leaf2").username ?? "").get("auth-chain")).toBe(want);
    for (const c of accepted()) {
      const chain = (params(c.username ?? "").get("auth-chain") ?? "").split(";");
      expect(chain[0], c.clientId).toBe(c.clientId);
      expect(chain.at(-1), c.clientId).toBe("edge1");
    }
  },
  "connect/password.in-scope": () => {
    const want = exampleText("connect/password.in-scope");
    for (const c of accepted()) {
      expect(norm(c.password ?? ""), c.clientId).toBe(norm(want));
      // Signed with edge1's `$edgeHub` key (the parent's), not any device's.
      expect(signedByAny(parseSasToken(c.password ?? ""), [captured().https.key]), c.clientId).toBe(true);
    }
  },
  "connect/password.ttl": () => {
    for (const c of accepted()) {
      const ttl = parseSasToken(c.password ?? "").expiry - c.at / 1000;
      expect(Math.abs(ttl - Number(example("connect/password.ttl"))), c.clientId).toBeLessThan(60);
    }
  },
  "connect/clean-session": () => {
    // Device links keep their session (C2D); the hub's own and modules' links get no C2D.
    for (const id of ["leaf1", "leaf2", "edge2"])
      expect(connectOf(id).clean, id).toBe(example("connect/clean-session"));
  },
  "connect/will": () => {
    for (const c of captured().mqtt.connects) expect(c.will, c.clientId).toBe(false);
  },
  "connect/protocol-level": () => {
    for (const c of captured().mqtt.connects)
      expect(c.protocolVersion, c.clientId).toBe(example("connect/protocol-level"));
  },

  // ---- telemetry.json
  "telemetry/topic": () => expect(sentWith(BODIES.modPlain).topic).toBe(exampleText("telemetry/topic")),
  "telemetry/topic.with-properties": () =>
    expect(sentWith(BODIES.bag).topic).toBe(exampleText("telemetry/topic.with-properties")),
  "telemetry/system-properties.sent": () => {
    const order = example("telemetry/system-properties.sent") as string[];
    const keys = bagKeys(sentWith(BODIES.sys).topic);
    expect(keys).toEqual(["$.mid", "$.cid", "$.ct", "$.ce", "color"]);
    for (const t of telemetry()) {
      const sys = bagKeys(t.topic).filter((k) => k.startsWith("$."));
      expect(
        sys.every((k) => order.includes(k)),
        t.topic,
      ).toBe(true);
      expect(sys, t.topic).toEqual([...sys].sort((a, b) => order.indexOf(a) - order.indexOf(b)));
      // System properties before application ones.
      const firstApp = bagKeys(t.topic).findIndex((k) => !k.startsWith("$."));
      if (firstApp >= 0)
        expect(
          bagKeys(t.topic)
            .slice(firstApp)
            .some((k) => k.startsWith("$.")),
          t.topic,
        ).toBe(false);
    }
  },
  "telemetry/system-properties.not-sent": () => {
    const never = example("telemetry/system-properties.not-sent") as string[];
    // Among them an output's `$.on` (mod1) and an expiry's `$.exp` (leaf1).
    expect(bagKeys(sentWith(BODIES.modOut).topic)).toEqual([]);
    expect(bagKeys(sentWith(BODIES.exp).topic)).toEqual([]);
    for (const t of telemetry()) for (const k of bagKeys(t.topic)) expect(never, t.topic).not.toContain(k);
  },
  "telemetry/message-id": () => {
    expect(bagKeys(sentWith(BODIES.modPlain).topic)).not.toContain("$.mid");
    expect(sentWith(BODIES.bag).topic).toContain("%24.mid=m-1&");
    for (const t of telemetry())
      expect(
        bagKeys(t.topic).filter((k) => k === "$.fid"),
        t.topic,
      ).toEqual([]);
  },
  "telemetry/qos": () => {
    for (const t of telemetry()) expect(t.qos, t.topic).toBe(example("telemetry/qos"));
  },
  "telemetry/packet-id": () => {
    const max = Number(example("telemetry/packet-id"));
    const ids = [
      ...captured()
        .mqtt.publishes.filter((p) => p.qos === 1)
        .map((p) => p.messageId),
      ...captured()
        .mqtt.received.filter((r) => r.cmd === "subscribe" || r.cmd === "unsubscribe")
        .map((r) => r.messageId),
    ];
    expect(ids.length).toBeGreaterThan(10);
    for (const id of ids) expect(id >= 1 && id <= max, String(id)).toBe(true);
  },
  "telemetry/batch": () => {
    for (const b of Object.values(BODIES)) if (b !== BODIES.refused) sentWith(b);
  },

  // ---- twin.json
  "twin/subscribe.responses": () => {
    const filter = `${exampleText("twin/subscribe.responses")}@0`;
    for (const c of accepted()) expect(subs("subscribe", c.clientId), c.clientId).toContain(filter);
  },
  "twin/get": () => {
    const gets = captured().mqtt.publishes.filter(
      (p) => p.clientId === "leaf1" && p.topic.startsWith("$iothub/twin/GET/"),
    );
    expect(gets.length).toBeGreaterThanOrEqual(1);
    for (const g of gets) {
      expect(norm(g.topic)).toBe(norm(exampleText("twin/get")));
      expect(g.topic.split("$rid=")[1]).toMatch(GUID);
      expect(g.payload.length).toBe(0);
      expect(g.qos).toBe(1);
    }
    // A GUID per request, on every link: never one twice.
    const rids = captured()
      .mqtt.publishes.filter((p) => p.topic.startsWith("$iothub/twin/"))
      .map((p) => p.topic.split("$rid=")[1]);
    expect(new Set(rids).size).toBe(rids.length);
  },
  "twin/patch-reported": () => {
    const patch = captured().mqtt.publishes.filter(
      (p) => p.clientId === "leaf1" && norm(p.topic) === norm(exampleText("twin/patch-reported")),
    );
    expect(patch).toHaveLength(1);
    expect(JSON.parse(patch[0]?.payload.toString() ?? "")).toMatchObject({ firmware: "1.0" });
    expect(patch[0]?.qos).toBe(1);
  },
  "twin/desired-notification": () => expect(captured().observed.desired).toMatchObject({ interval: 30 }),

  // ---- methods.json
  "methods/subscribe": () => {
    const filter = `${exampleText("methods/subscribe")}@0`;
    expect(subs("subscribe", "leaf1")).toContain(filter);
    // Nobody listens for mod1's methods: not subscribed; leaf1 gone: unsubscribed.
    expect(subs("subscribe", "edge1/mod1")).not.toContain(filter);
    expect(subs("unsubscribe", "leaf1")).toContain(exampleText("methods/subscribe"));
  },
  "methods/request": () =>
    expect(captured().observed.method).toEqual({ name: "reboot", payload: { delay: 0 } }),
  "methods/response": () => {
    const res = captured().mqtt.publishes.filter(
      (p) => p.clientId === "leaf1" && p.topic.startsWith("$iothub/methods/res/"),
    );
    expect(res.map((p) => p.topic)).toEqual([exampleText("methods/response")]);
    expect(JSON.parse(res[0]?.payload.toString() ?? "")).toEqual({ done: true });
  },

  // ---- c2d.json
  "c2d/subscribe": () => {
    const filter = exampleText("c2d/subscribe");
    expect(subs("subscribe", "leaf1")).toContain(`${filter}@1`);
    expect(subs("unsubscribe", "leaf1")).toContain(filter);
    // A module gets no C2D.
    expect(subs("subscribe", "edge1/mod1").some((t) => t.includes("devicebound"))).toBe(false);
  },
  "c2d/delivery": () =>
    expect(captured().observed.c2d.map((m) => [m.messageId, m.body])).toEqual([["c2d-1", "hello leaf1"]]),
  "c2d/complete": () => {
    const acks = captured().mqtt.received.filter((r) => r.cmd === "puback" && r.clientId === "leaf1");
    expect(acks.filter((a) => a.messageId === 7)).toHaveLength(1);
    // Not before leaf1 had it, and in arrival order (8 arrived first).
    expect(captured().observed.c2d[0]?.ackedBefore).toBe(false);
    expect(acks.map((a) => a.messageId)).toEqual([8, 7]);
  },
  "c2d/abandon-reject": () => {
    expect(captured().observed.c2d.some((m) => m.body === "refused-c2d")).toBe(false);
    expect(
      captured().mqtt.received.some((r) => r.cmd === "puback" && r.clientId === "leaf1" && r.messageId === 8),
    ).toBe(true);
  },

  // ---- scope.json
  "scope/nested.post.path": () => {
    const [method, url] = exampleText("scope/nested.post.path").split(" ");
    expect(scopePosts().length).toBeGreaterThanOrEqual(4);
    for (const r of scopePosts()) expect(`${r.method} ${decodeURIComponent(r.url)}`).toBe(`${method} ${url}`);
  },
  "scope/nested.post.headers": () => {
    const want = example("scope/nested.post.headers") as Record<string, string>;
    for (const r of scopePosts()) {
      expect(norm(header(r.rawHeaders, "Authorization") ?? "")).toBe(norm(want.Authorization ?? ""));
      expect(header(r.rawHeaders, "Content-Type")).toBe(want["Content-Type"]);
    }
  },
  "scope/nested.post.body": () => {
    const want = example("scope/nested.post.body") as Record<string, unknown>;
    const body = scopePosts()
      .map((r) => JSON.parse(r.body) as Record<string, unknown>)
      .find((b) => b.authChain === want.authChain);
    expect(Object.keys(body ?? {})).toEqual(Object.keys(want));
    expect({ ...body, pageSize: want.pageSize }).toEqual(want);
    expect(body?.pageSize).toBeLessThanOrEqual(1000);
  },
  "scope/nested.walk": () => {
    // The first walk (its first call answered 429 and retried), as the example's steps.
    const calls = captured()
      .https.calls.filter((c) => c.method === "POST")
      .slice(1, 4);
    const steps = calls.map(
      (c) => `authChain=${c.body?.authChain}${c.body?.continuationLink ? " + continuationLink" : ""}`,
    );
    expect(steps).toEqual(example("scope/nested.walk"));
  },
  "scope/nested.on-behalf-of": () => {
    const posts = httpsAt("POST", "/devices/edge1/modules/$edgeHub/getDeviceAndModuleOnBehalfOf");
    expect(posts.length).toBeGreaterThanOrEqual(1);
    const [post] = posts;
    expect(line(post)).toBe(exampleText("scope/nested.on-behalf-of"));
    expect(norm(header(post?.rawHeaders ?? [], "Authorization") ?? "")).toBe(
      norm(exampleText("connect/password.in-scope")),
    );
    expect(header(post?.rawHeaders ?? [], "Content-Type")).toBe("application/json; charset=utf-8");
    expect(header(post?.rawHeaders ?? [], "x-ms-edge-origin-edge")).toBe("edge1");
    // IdentityOnBehalfOfRequest's fields in order, the null module omitted; the chain edge1's own.
    expect(post?.body).toBe('{"targetDeviceId":"leaf4","authChain":"edge1"}');
    // Taken into the cache: leaf4's next login got in, no whole sync was needed for it.
    expect(captured().observed.leaf4In).toBe(true);
  },
  "scope/legacy.get-one": () => {
    const gets = captured().legacy.requests.filter((r) => r.url.includes("/deviceAndModuleInDeviceScope?"));
    expect(gets.map(line)).toEqual([exampleText("scope/legacy.get-one")]);
    expect(norm(header(gets[0]?.rawHeaders ?? [], "Authorization") ?? "")).toBe(
      norm(exampleText("connect/password.in-scope")),
    );
    expect(captured().observed.legacyOne).toBe(true);
  },
  "scope/legacy.get": () => {
    const legacy = captured().legacy;
    // Asked after the POST route answered 404.
    expect(legacy.requests.find((r) => r.url.includes("Scope"))?.method).toBe("POST");
    const gets = legacy.requests.filter(
      (r) => r.method === "GET" && r.url.includes("devicesAndModulesInDeviceScope"),
    );
    expect(norm(`GET ${decodeURIComponent(gets[0]?.url ?? "")}`)).toBe(norm(exampleText("scope/legacy.get")));
    // The next page: the continuationLink as the parent gave it, with the same token form.
    expect(gets.at(-1)?.url).toContain("continuationToken=page-2");
    for (const g of gets)
      expect(norm(header(g.rawHeaders, "Authorization") ?? "")).toBe(
        norm(exampleText("connect/password.in-scope")),
      );
    expect(legacy.refused).toEqual([]);
    expect(captured().observed.legacySync).toBe(true);
  },
  "scope/response": () =>
    expect(captured().observed.scopeIds).toEqual(
      expect.arrayContaining([
        "edge1",
        "leaf1",
        "leaf3",
        "edge2",
        "leaf2",
        "edge1/mod1",
        "edge2/mod2",
        "edge2/$edgeHub",
      ]),
    ),
  "scope/retry": () => {
    const [first, second] = captured().https.calls;
    const nonTransient = (example("scope/retry") as { nonTransient: number[] }).nonTransient;
    // 429 is not among the statuses not retried: the same call again.
    expect(nonTransient).not.toContain(429);
    expect(second).toEqual(first);
    expect(captured().https.refused).toEqual([]);
  },

  // ---- identity.json
  "identity/module-identity.get": () => {
    const gets = captured().https.requests.filter(
      (r) => r.method === "GET" && r.url.includes("/modules/%24"),
    );
    expect(gets.length).toBeGreaterThanOrEqual(1);
    for (const g of gets) {
      expect(`GET ${g.url}`).toBe(exampleText("identity/module-identity.get"));
      const token = parseSasToken(header(g.rawHeaders, "Authorization") ?? "");
      expect(token.resource).toBe(`${HUB}/devices/edge1`);
      expect(signedByAny(token, [captured().https.deviceKey ?? ""])).toBe(true);
    }
  },
  "identity/module-identity.put": () => {
    const puts = httpsAt("PUT", "/devices/edge2/modules/mod3?");
    expect(puts.map((p) => line(p))).toEqual([
      "PUT /devices/edge2/modules/mod3?api-version=2017-11-08-preview",
      "PUT /devices/edge2/modules/mod3?api-version=2017-11-08-preview",
    ]);
    for (const p of puts) {
      expect(JSON.parse(p.body)).toEqual(example("identity/module-identity.put"));
      expect(header(p.rawHeaders, "Content-Type")).toMatch(/^application\/json/);
      // On edge2's behalf with edge1's `$edgeHub` token (the parent checked it: nothing refused).
      expect(norm(header(p.rawHeaders, "Authorization") ?? "")).toBe(
        norm(exampleText("connect/password.in-scope")),
      );
    }
    // create_module without If-Match, update_module with `*`.
    expect(puts.map((p) => header(p.rawHeaders, "If-Match"))).toEqual([undefined, "*"]);
    expect(captured().observed.moduleWrites.statuses.slice(0, 2)).toEqual([200, 200]);
    expect(captured().https.refused).toEqual([]);
  },
  "identity/module-identity.list-delete": () => {
    const deletes = httpsAt("DELETE", "/devices/edge2/modules/");
    expect(deletes.map(line)).toEqual([exampleText("identity/module-identity.list-delete")]);
    expect(header(deletes[0]?.rawHeaders ?? [], "If-Match")).toBe("*");
    expect(deletes[0]?.body).toBe("");
    // The list answered by edge1 from its cache to edge2's credential, never asked upstream.
    const { statuses, listed } = captured().observed.moduleWrites;
    expect(statuses.slice(2)).toEqual([200, 204]);
    expect(listed).toEqual(["$edgeHub", "mod2"]);
    expect(httpsAt("GET", "/devices/edge2/modules")).toEqual([]);
  },
  "identity/token.audience": () => {
    for (const c of accepted())
      expect(/sr=([^&]+)/.exec(c.password ?? "")?.[1], c.clientId).toBe(
        exampleText("identity/token.audience"),
      );
  },

  // ---- refusals.json
  "refusals/connack.3": () => {
    // Two CONNACK 3 then in: leaf2's message went up, nothing of it dead-lettered.
    expect(captured().mqtt.connects.filter((c) => c.clientId === "leaf2").length).toBeGreaterThanOrEqual(3);
    sentWith(BODIES.leaf2);
    expect(captured().observed.deadLettered).not.toContain(BODIES.leaf2);
  },
  "refusals/connack.1-2": () => {
    // CONNACK 2 every time: counted as a refusal, the lane dead-lettered after three.
    expect(captured().mqtt.connects.filter((c) => c.clientId === "leaf3").length).toBeGreaterThanOrEqual(3);
    expect(captured().observed.deadLettered).toContain(BODIES.refused);
  },
  "refusals/connack-timeout": () => {
    // edge2's first login got no CONNACK: the edge gave up after the example's seconds, not
    // before, and logged in again.
    const [silent, next] = captured().mqtt.connects.filter((c) => c.clientId === "edge2");
    const waitedMs = (silent?.closedAt ?? 0) - (silent?.at ?? 0);
    const wantMs = Number(example("refusals/connack-timeout")) * 1000;
    // Slack for the TLS handshake before the CONNECT. No upper bound: a timer fires late on a
    // loaded machine, and that it fired at all shows in the next login.
    expect(waitedMs).toBeGreaterThanOrEqual(wantMs - 500);
    expect(next).toBeDefined();
  },
};

describe("upstream conformance against Microsoft's forms", () => {
  test("drives edge1 and edge2 with SDK clients against strict recording parents", async () => {
    site = await driveSite();
  }, 120_000);

  const same = [...FORMS].filter(([, f]) => f.verdict === "same").map(([k]) => k);
  test.each(same)("%s: as Microsoft's", (key) => {
    const check = CHECKERS[key];
    if (!check) throw new Error(`${key} is "same" in its fixture but has no checker here`);
    check();
  });

  test("every checker is of a form the fixtures call same", () => {
    expect(Object.keys(CHECKERS).filter((k) => FORMS.get(k)?.verdict !== "same")).toEqual([]);
  });

  test.each([...FORMS].filter(([, f]) => f.verdict !== "same"))(
    "%s: says why it differs or what is unknown",
    (_key, form) => {
      expect(form.note ?? "").toMatch(/\S{3,}/);
    },
  );
});
