/**
 * Fuzzing of what the hub builds objects from (issue 14): twin patches, property bags in
 * telemetry topics, JSON bodies read by route conditions, and service API bodies, all
 * with adversarial keys, through the real hub (MQTT over TLS, HTTPS). One device attacks;
 * afterwards the prototypes are clean, nothing was logged as an error, and a second
 * device's twin, C2D topics and login are as before. `FUZZ_SEED` replays a run.
 */
import { join } from "node:path";
import fc from "fast-check";
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { type EdgeHub, EVENTS_QUEUE, type Logger } from "../../ts/index.js";
import {
  adversarialKey,
  canonical,
  type JsonTree,
  jsonObjectTree,
  jsonText,
  jsonTree,
  PROTO_KEYS,
  pollution,
} from "../helpers/adversarial.js";
import { tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";
import { answers, connectedRaw, type RawClient } from "../helpers/mqtt-raw.js";
import { call } from "../helpers/service.js";

/** Names only the trap route reads: the fuzz never sends them, so it must never match. */
const TRAP_NAMES = ["isPrototypeOf", "propertyIsEnumerable"];
const TRAP = `FROM /messages/* WHERE ${TRAP_NAMES.flatMap((n) => [
  `IS_DEFINED(${n})`,
  `IS_DEFINED($${n})`,
  `IS_DEFINED($body.${n})`,
  `IS_DEFINED($body.__proto__.${n})`,
]).join(" OR ")} INTO BrokeredEndpoint("/modules/trap/inputs/in")`;

const key = adversarialKey.filter((k) => !TRAP_NAMES.includes(k));
const name = fc.oneof(
  fc.constantFrom(...PROTO_KEYS.filter((k) => !TRAP_NAMES.includes(k)), "a", "temp", "$.ct"),
  fc.stringMatching(/^[a-z_][a-z0-9_]{0,3}$/).filter((n) => !/^(and|or|not|true|false|null)$/i.test(n)),
);

/** Route conditions over application, system and body properties with adversarial names. */
const condition: fc.Arbitrary<string> = fc.letrec<{ cond: string; atom: string }>((tie) => ({
  atom: fc.oneof(
    name.filter((n) => !n.startsWith("$")),
    name.filter((n) => !n.startsWith("$")).map((n) => `$${n}`),
    fc
      .array(
        name.filter((n) => /^[A-Za-z_]/.test(n)),
        { minLength: 1, maxLength: 3 },
      )
      .map((p) => `$body.${p.join(".")}`),
    fc.constantFrom("'x'", "1", "true", "null", "$connectionDeviceId", "$contentType"),
  ),
  cond: fc.oneof(
    { depthSize: "small" },
    tie("atom").map((a) => `IS_DEFINED(${a})`),
    fc.tuple(tie("atom"), fc.constantFrom("=", "<>", "<", ">="), tie("atom")).map((t) => t.join(" ")),
    tie("atom").map((a) => `LENGTH(${a}) > 0`),
    fc
      .tuple(tie("cond"), fc.constantFrom("AND", "OR"), tie("cond"))
      .map(([a, op, b]) => `(${a}) ${op} (${b})`),
    tie("cond").map((c) => `NOT (${c})`),
  ),
})).cond;

/** A url-encoded property bag, sometimes saying the body is JSON. */
const bag = fc
  .tuple(
    fc.array(fc.tuple(key, fc.string({ unit: "grapheme", maxLength: 6 })), { maxLength: 5 }),
    fc.boolean(),
  )
  .map(([entries, json]) =>
    [...entries, ...(json ? [["$.ct", "application/json"]] : [])]
      .map(([k, v]) => `${encodeURIComponent(k as string)}=${encodeURIComponent(v as string)}`)
      .join("&"),
  );

/** Keys of JSON documents: mostly ones a twin accepts (prototype names first), some it refuses. */
const docKey = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(...PROTO_KEYS.filter((k) => !TRAP_NAMES.includes(k)), "a", "ü", "日本"),
  },
  { weight: 1, arbitrary: key },
);
const tree = (t?: fc.Arbitrary<JsonTree>) => (t ?? jsonObjectTree(docKey)).map(jsonText);
/** HTTP header names (token characters only) for `iothub-app-*` C2D properties. */
const headerKey = fc.oneof(
  fc.constantFrom(...PROTO_KEYS.filter((k) => !TRAP_NAMES.includes(k))),
  fc.stringMatching(/^[a-z0-9_-]{1,6}$/),
);

type Action =
  | { kind: "telemetry"; bag: string; body: string }
  | { kind: "reported"; body: string }
  | { kind: "twin-get" }
  | { kind: "rest"; method: string; path: string; body: string; headers?: Record<string, string> };

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({
    kind: fc.constant("telemetry" as const),
    bag,
    body: fc.oneof(tree(), tree(jsonTree(docKey)), fc.string()),
  }),
  fc.record({
    kind: fc.constant("reported" as const),
    body: fc.oneof(tree(), tree(jsonTree(docKey)), fc.string()),
  }),
  fc.constant({ kind: "twin-get" as const }),
  fc.record({
    kind: fc.constant("rest" as const),
    method: fc.constant("PATCH"),
    path: fc.constant("/twins/dev1"),
    body: fc
      .tuple(tree(), tree())
      .map(
        ([tags, desired]) => `{"tags":${tags},"properties":{"desired":${desired}},"__proto__":${desired}}`,
      ),
  }),
  fc.record({
    kind: fc.constant("rest" as const),
    method: fc.constant("PUT"),
    path: fc.constantFrom(
      "/devices/fz0",
      "/devices/fz1",
      "/devices/fz0/modules/m",
      "/devices/dev1/modules/m",
    ),
    body: tree(),
  }),
  fc.record({
    kind: fc.constant("rest" as const),
    method: fc.constant("POST"),
    path: fc.constantFrom("/devices/query", "/twins/dev1/methods"),
    body: fc.oneof(tree(), fc.constant('{"query":"SELECT * FROM devices WHERE tags.constructor = null"}')),
  }),
  fc.record({
    kind: fc.constant("rest" as const),
    method: fc.constant("POST"),
    path: fc.constant("/devices/dev1/messages/deviceBound"),
    body: fc.string(),
    headers: fc
      .array(fc.tuple(headerKey, fc.stringMatching(/^[ -~]{0,6}$/)), { maxLength: 4 })
      .map((h) => Object.fromEntries(h.map(([k, v]) => [`iothub-app-${k}`, v.trim()]))),
  }),
);

/** The next PUBLISH on `topic` (prefix), skipping other packets; "closed" if the hub closed. */
async function publishOn(c: RawClient, prefix: string): Promise<Packet | "closed"> {
  for (;;) {
    const p = await c.next();
    if (p === "closed" || (p.cmd === "publish" && p.topic.startsWith(prefix))) return p;
  }
}

async function c2dTopic(hub: EdgeHub, c: RawClient, deviceId: string): Promise<string> {
  await hub.delivery.sendC2D(deviceId, { body: Buffer.from("ping"), properties: { k: "v" } });
  const p = await publishOn(c, `devices/${deviceId}/messages/devicebound`);
  if (p === "closed") throw new Error(`${deviceId}'s connection closed`);
  if (p.cmd === "publish" && p.messageId !== undefined)
    c.send({ cmd: "puback", messageId: p.messageId } as Packet);
  return p.cmd === "publish" ? p.topic : "";
}

describe("hostile input through the real hub", () => {
  it("random twin patches, property bags, REST bodies and route conditions from one device: nothing escapes, nothing leaks", async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const errors: string[] = [];
    const log: Logger = {
      log: (level, event, fields) => {
        if (level === "error") errors.push(`${event} ${JSON.stringify(fields)}`);
      },
    };
    const routes: Record<string, string> = {
      trap: TRAP,
      twins: "FROM /twinChangeNotifications INTO $upstream",
    };
    fc.sample(condition, { numRuns: 8, seed }).forEach((c, i) => {
      routes[`r${i}`] = `FROM /messages/* WHERE ${c} INTO $upstream`;
    });
    const hub = await startHub(join(await tempDir(), "hub"), { routes }, log);
    const keyOf = async (deviceId: string) =>
      (await hub.registry.createDevice({ deviceId })).authentication.symmetricKey?.primaryKey ?? "";
    const [key1, key2] = [await keyOf("dev1"), await keyOf("dev2")];
    const connect = async (deviceId: string, k: string): Promise<RawClient> => {
      const c = await connectedRaw(hub.ports.mqtts, hub.caCertificate, deviceId, k);
      c.send({
        cmd: "subscribe",
        messageId: 1,
        subscriptions: [
          { topic: "$iothub/twin/res/#", qos: 0 },
          { topic: `devices/${deviceId}/messages/devicebound/#`, qos: 1 },
        ],
      } as Packet);
      return c;
    };

    // The bystander: a twin of its own, a C2D topic, a login.
    let dev2 = await connect("dev2", key2);
    dev2.send({
      cmd: "publish",
      topic: "$iothub/twin/PATCH/properties/reported/?$rid=1",
      payload: Buffer.from('{"temp":21,"nested":{"a":1}}'),
      qos: 0,
      retain: false,
      dup: false,
    } as Packet);
    expect(await publishOn(dev2, "$iothub/twin/res/204/")).not.toBe("closed");
    expect(
      (
        await call(hub, "PATCH", "/twins/dev2", {
          tags: { site: "x" },
          properties: { desired: { mode: "a" } },
        })
      ).status,
    ).toBe(200);
    const twinOf = async (id: string) => {
      const t = (await call(hub, "GET", `/twins/${id}`)).body as Record<string, unknown>;
      return canonical({ tags: t.tags, properties: t.properties, status: t.status });
    };
    const twin2 = await twinOf("dev2");
    const topic2 = await c2dTopic(hub, dev2, "dev2");

    let dev1 = await connect("dev1", key1);
    let rid = 10;
    let mid = 1;
    const statuses = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(action, async (a) => {
        if (a.kind === "rest") {
          const r = await call(hub, a.method, a.path, Buffer.from(a.body), a.headers ?? {});
          statuses.set(`${a.method} ${r.status}`, (statuses.get(`${a.method} ${r.status}`) ?? 0) + 1);
          expect(r.status, `${a.method} ${a.path} ${a.body}`).toBeLessThan(500);
        } else {
          const id = rid++;
          const [topic, payload] =
            a.kind === "telemetry"
              ? [`devices/dev1/messages/events/${a.bag}`, a.body]
              : a.kind === "reported"
                ? [`$iothub/twin/PATCH/properties/reported/?$rid=${id}`, a.body]
                : [`$iothub/twin/GET/?$rid=${id}`, ""];
          const messageId = (mid++ % 65535) + 1;
          dev1.send({
            cmd: "publish",
            topic,
            payload: Buffer.from(payload),
            qos: a.kind === "telemetry" ? 1 : 0,
            messageId,
            retain: false,
            dup: false,
          } as Packet);
          for (;;) {
            const p = await dev1.next();
            expect(p, `${topic} ${payload}`).not.toBe("closed");
            if (p === "closed") break;
            if (a.kind === "telemetry" && p.cmd === "puback" && p.messageId === messageId) break;
            if (p.cmd === "publish" && p.topic.startsWith("$iothub/twin/res/") && answers(p.topic, id)) {
              expect(p.topic, `${topic} ${payload}`).toMatch(
                a.kind === "reported" ? /res\/(204|400)\// : /res\/200\//,
              );
              break;
            }
          }
        }
        expect(pollution()).toEqual([]);
      }),
      { seed, numRuns: 150, endOnFailure: true },
    );
    expect(pollution()).toEqual([]);
    expect(errors).toEqual([]);
    // The trap route never matched: no condition saw a prototype member.
    expect(await hub.store.read("$inputs/dev1/trap")).toEqual([]);
    // Every stored message names its real sender: dev1's, and the one twin change of dev2.
    const others = (await hub.store.read(EVENTS_QUEUE, { limit: 10_000 }))
      .filter((m) => m.properties["$.cdid"] !== "dev1")
      .map((m) => `${m.properties["$.cdid"]} ${m.body.toString()}`);
    expect(others).toEqual(['dev2 {"temp":21,"nested":{"a":1}}']);
    // The bystander sees what it saw before: its twin, its C2D topic, and it can log in again.
    expect(await twinOf("dev2")).toBe(twin2);
    expect(await c2dTopic(hub, dev2, "dev2")).toBe(topic2);
    dev2.end();
    dev2 = await connect("dev2", key2);
    expect(await c2dTopic(hub, dev2, "dev2")).toBe(topic2);
    dev1.end();
    dev1 = await connect("dev1", key1);
    dev1.end();
    dev2.end();
  }, 60_000);
});
