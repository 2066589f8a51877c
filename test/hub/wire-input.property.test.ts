/**
 * Properties of what the hub builds from wire input (issue 14, item 2): JSON parses into
 * null-prototype objects, twin patches merge as a simple model says (null removes, depth
 * and size limits) with any key, property bags and stored properties round-trip any key,
 * and route conditions see own properties only.
 */
import { fc, test } from "@fast-check/vitest";
import { afterEach, describe, expect, it } from "vitest";
import type { EdgeHubError } from "../../ts/index.js";
import { inheritsNothing, MAX_JSON_DEPTH, mergePatch, parseJson, record } from "../../ts/json.js";
import { decodePropertyBag, encodePropertyBag, parsePublishTopic } from "../../ts/protocol/topics.js";
import { matches, parseCondition } from "../../ts/routing/condition.js";
import { Twins } from "../../ts/twin/twins.js";
import {
  adversarialKey,
  canonical,
  type JsonTree,
  jsonObjectTree,
  jsonText,
  jsonTree,
  PROTO_KEYS,
  pollution,
  prototypeFree,
} from "../helpers/adversarial.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

afterEach(() => {
  expect(pollution()).toEqual([]);
});

describe("parseJson", () => {
  test.prop([jsonTree()])("yields null-prototype objects holding exactly the keys JSON.parse sees", (t) => {
    const text = jsonText(t);
    const v = parseJson(text);
    expect(prototypeFree(v)).toBe(true);
    expect(canonical(v)).toBe(canonical(JSON.parse(text)));
    expect(pollution()).toEqual([]);
  });

  it("refuses nesting past its bound instead of recursing into it", () => {
    const deep = `${"[".repeat(MAX_JSON_DEPTH + 1)}${"]".repeat(MAX_JSON_DEPTH + 1)}`;
    expect(() => parseJson(deep)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(parseJson(`${"[".repeat(MAX_JSON_DEPTH)}${"]".repeat(MAX_JSON_DEPTH)}`)).toBeDefined();
  });
});

/** A twin section in the model: objects are Maps, anything else is its canonical JSON. */
type Model = Map<string, Model | string>;

/** What JSON.parse keeps of a tree: the last of duplicate keys. */
function modelOf(t: JsonTree): Model | string {
  if (t === null || typeof t !== "object" || Array.isArray(t)) return canonical(JSON.parse(jsonText(t)));
  const m: Model = new Map();
  for (const [k, v] of t.obj) {
    m.delete(k);
    m.set(k, modelOf(v));
  }
  return m;
}

/** A key IoT Hub refuses: '.', '$', space or a control character. */
function badKey(k: string): boolean {
  return [...k].some(
    (ch) => ch === "." || ch === "$" || ch === " " || ch < "\u0020" || (ch >= "\u007f" && ch <= "\u009f"),
  );
}

/**
 * IoT Hub's patch rules as the twins apply them to what JSON.parse makes of `text`: an
 * object, nesting (objects and arrays) at most 10, keys 1-128 characters, also in arrays.
 */
function valid(text: string): boolean {
  const within = (v: unknown, depth: number): boolean => {
    if (typeof v !== "object" || v === null) return true;
    if (depth > 10) return false;
    if (Array.isArray(v)) return v.every((x) => within(x, depth + 1));
    return Object.keys(v).every(
      (k) =>
        k.length > 0 && k.length <= 128 && !badKey(k) && within((v as Record<string, unknown>)[k], depth + 1),
    );
  };
  const v: unknown = JSON.parse(text);
  return typeof v === "object" && v !== null && !Array.isArray(v) && within(v, 1);
}

function modelMerge(target: Model, patch: Model): void {
  for (const [k, v] of patch) {
    if (v === "null") target.delete(k);
    else if (v instanceof Map) {
      let t = target.get(k);
      if (!(t instanceof Map)) {
        t = new Map();
        target.set(k, t);
      }
      modelMerge(t, v);
    } else target.set(k, v);
  }
}

function modelText(m: Model | string): string {
  if (!(m instanceof Map)) return m;
  const keys = [...m.keys()].sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${modelText(m.get(k) as Model | string)}`).join(",")}}`;
}

function copy(m: Model): Model {
  return new Map([...m].map(([k, v]) => [k, v instanceof Map ? copy(v) : v]));
}

/** Patches that may break a rule: too deep, too large, bad keys, not objects. */
const patchTree: fc.Arbitrary<JsonTree> = fc.oneof(
  { weight: 6, arbitrary: jsonObjectTree() },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 8, max: 12 }), adversarialKey)
      .map(([n, k]) => Array.from({ length: n }).reduce<JsonTree>((inner) => ({ obj: [[k, inner]] }), 1)),
  },
  {
    weight: 1,
    arbitrary: fc
      .tuple(adversarialKey, fc.integer({ min: 10_000, max: 20_000 }))
      .map(([k, n]): JsonTree => ({ obj: [[k, "x".repeat(n)]] })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.integer({ min: 7, max: 12 }), adversarialKey).map(
      ([n, k]): JsonTree => ({
        obj: [[k, Array.from({ length: n }).reduce<JsonTree>((inner) => [inner], 1)]],
      }),
    ),
  },
  { weight: 1, arbitrary: jsonTree() },
);

describe("twin patches against a model", () => {
  it("merge as JSON merge patches with any key, null removing, depth and size limits refusing", async () => {
    const twins = new Twins(await openStore(await tempDir()));
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(patchTree, { minLength: 1, maxLength: 5 }), async (patches) => {
        const clientId = `dev${run++}`;
        let model: Model = new Map();
        let version = 1;
        for (const p of patches) {
          const parsed = parseJson(jsonText(p));
          const expected = modelOf(p);
          let next: Model | undefined;
          if (valid(jsonText(p))) {
            next = copy(model);
            modelMerge(next, expected as Model);
            if (Buffer.byteLength(modelText(next)) > 32 * 1024) next = undefined;
          }
          const got = await twins.patchReported(clientId, parsed).catch((e: EdgeHubError) => e.code);
          if (next) {
            model = next;
            expect(got).toBe(++version);
          } else expect(got).toBe("TWIN_INVALID");
        }
        const twin = await twins.get(clientId);
        expect(canonical(twin.reported.properties)).toBe(modelText(model));
        expect(twin.reported.version).toBe(version);
        expect(prototypeFree(twin.reported.properties)).toBe(true);
        expect(pollution()).toEqual([]);
      }),
      { numRuns: 60 },
    );
  });

  test.prop([jsonObjectTree(), jsonObjectTree()])(
    "mergePatch writes own keys only, whatever the target",
    (a, b) => {
      // A target built the careless way (Object.prototype, own `__proto__` from JSON.parse).
      const target = JSON.parse(jsonText(a)) as Record<string, unknown>;
      mergePatch(target, parseJson(jsonText(b)) as Record<string, unknown>);
      const model = modelOf(a) as Model;
      const patch = modelOf(b) as Model;
      modelMerge(model, patch);
      expect(canonical(target)).toBe(modelText(model));
      expect(pollution()).toEqual([]);
    },
  );
});

/** Property bags: keys and values a client may send, prototype names and escapes included. */
const bag = fc.array(fc.tuple(adversarialKey, fc.string({ unit: "grapheme", maxLength: 6 })), {
  maxLength: 6,
});

function bagRecord(entries: Array<[string, string]>): Record<string, string> {
  const out = record<string>();
  for (const [k, v] of entries) out[k] = v;
  return out;
}

describe("property bags", () => {
  test.prop([bag])("round-trip through a telemetry topic with every key kept", (entries) => {
    const props = bagRecord(entries);
    const topic = `devices/d1/messages/events/${encodePropertyBag(props)}`;
    const t = parsePublishTopic(topic);
    expect(t?.kind).toBe("telemetry");
    const got = (t as { properties: Record<string, string> }).properties;
    expect(inheritsNothing(got)).toBe(true);
    expect(Object.entries(got)).toEqual(Object.entries(props));
    expect(Object.entries(decodePropertyBag(encodePropertyBag(props)) ?? {})).toEqual(Object.entries(props));
  });

  it("round-trip through the store (RocksDB) with every key kept", async () => {
    const store = await openStore(await tempDir());
    await fc.assert(
      fc.asyncProperty(bag, async (entries) => {
        const props = bagRecord(entries);
        const [offset] = await store.append("bags", [{ body: Buffer.from("b"), properties: props }]);
        const [m] = await store.read("bags", { from: offset, limit: 1 });
        expect(inheritsNothing(m?.properties ?? {})).toBe(true);
        expect(Object.entries(m?.properties ?? {})).toEqual(Object.entries(props));
      }),
      { numRuns: 50 },
    );
  });
});

const conditionName = fc.oneof(
  fc.constantFrom(...PROTO_KEYS),
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,5}$/).filter((n) => !/^(and|or|not|true|false|null)$/i.test(n)),
);

describe("route conditions", () => {
  test.prop([conditionName, bag])(
    "see an application property only when the message has it",
    (name, entries) => {
      const properties = bagRecord(entries);
      const input = { properties, system: record<string>(), body: Buffer.alloc(0) };
      expect(matches(parseCondition(`IS_DEFINED(${name})`), input)).toBe(Object.hasOwn(properties, name));
      expect(matches(parseCondition(`IS_DEFINED($${name})`), input)).toBe(false);
    },
  );

  test.prop([conditionName, jsonObjectTree()])(
    "see a body field only when the JSON body has it",
    (name, t) => {
      const body = Buffer.from(jsonText(t));
      const input = { properties: record<string>(), system: { contentType: "application/json" }, body };
      const own = Object.hasOwn(JSON.parse(body.toString()) as object, name);
      expect(matches(parseCondition(`IS_DEFINED($body.${name})`), input)).toBe(own);
    },
  );
});

describe("regressions: shrunk counterexamples from the properties and the hub fuzz", () => {
  it("a tags patch `{__proto__: {constructor, hasOwnProperty}}` is kept as data and leaves Object.prototype alone", async () => {
    const twins = new Twins(await openStore(await tempDir()));
    const patch = parseJson(
      '{"__proto__":{"constructor":[[]],"hasOwnProperty":1},"prototype":{"valueOf":[1]}}',
    );
    await twins.patchTags("dev1", patch);
    await twins.patchReported("dev1", parseJson('{"__proto__":{"constructor":{"x":1}}}'));
    expect(pollution()).toEqual([]);
    const twin = await twins.get("dev1");
    expect(JSON.stringify(twin.tags)).toBe(
      '{"__proto__":{"constructor":[[]],"hasOwnProperty":1},"prototype":{"valueOf":[1]}}',
    );
    expect(JSON.stringify(twin.reported.properties)).toBe('{"__proto__":{"constructor":{"x":1}}}');
  });

  it("a property bag `__proto__=` keeps its key through the topic and the store", async () => {
    const t = parsePublishTopic("devices/d1/messages/events/__proto__=&constructor=c");
    const props = (t as { properties: Record<string, string> }).properties;
    expect(Object.entries(props)).toEqual([
      ["__proto__", ""],
      ["constructor", "c"],
    ]);
    const store = await openStore(await tempDir());
    await store.append("q", [{ body: Buffer.from("b"), properties: props }]);
    const [m] = await store.read("q");
    expect(Object.entries(m?.properties ?? {})).toEqual(Object.entries(props));
  });

  it("`$body.__proto__` and `toString` are undefined for a body and a bag that lack them", () => {
    const input = {
      properties: record<string>(),
      system: { contentType: "application/json" },
      body: Buffer.from("{}"),
    };
    expect(matches(parseCondition("IS_DEFINED($body.__proto__)"), input)).toBe(false);
    expect(matches(parseCondition("IS_DEFINED(toString) OR IS_DEFINED($constructor)"), input)).toBe(false);
  });
});

describe("twin key rules", () => {
  it("refuse C1 control characters as IoT Hub does (its rules exclude C0 and C1)", async () => {
    const twins = new Twins(await openStore(await tempDir()));
    for (const k of ["a\u0085", "\u0080", "x\u009fy", "a\u007f"]) {
      const err = await twins.patchReported("dev", { [k]: 1 }).catch((e: EdgeHubError) => e);
      expect((err as EdgeHubError).code, JSON.stringify(k)).toBe("TWIN_INVALID");
    }
    expect(await twins.patchReported("dev", { "a\u00a0": 1, ü: 2 })).toBe(2);
  });
});

describe("twin nesting", () => {
  it("counts arrays as levels, so no section outgrows what the store reads back; a parent's too-deep desired is refused", async () => {
    const twins = new Twins(await openStore(await tempDir()));
    const nested = (n: number) => `${"[".repeat(n)}1${"]".repeat(n)}`;
    await expect(twins.patchReported("dev", parseJson(`{"a":${nested(60)}}`))).rejects.toMatchObject({
      code: "TWIN_INVALID",
    });
    await expect(twins.patchReported("dev", parseJson(`{"a":[{"b.c":1}]}`))).rejects.toMatchObject({
      code: "TWIN_INVALID",
    });
    expect(await twins.patchReported("dev", parseJson(`{"a":${nested(9)}}`))).toBe(2);
    await expect(
      twins.adoptDesired("dev", parseJson(`{"$version":5,"a":${nested(60)}}`) as Record<string, unknown>),
    ).rejects.toMatchObject({ code: "TWIN_INVALID" });
    await expect(
      twins.adoptDesiredPatch(
        "dev",
        parseJson(`{"$version":6,"a":${nested(60)}}`) as Record<string, unknown>,
      ),
    ).rejects.toMatchObject({ code: "TWIN_INVALID" });
    const twin = await twins.get("dev");
    expect(JSON.stringify(twin.reported.properties)).toBe(`{"a":${nested(9)}}`);
    expect(twin.desired).toEqual({ properties: {}, version: 1 });
  });
});
