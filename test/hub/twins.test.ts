import { describe, expect, it } from "vitest";
import { Twins } from "../../ts/twin/twins.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

describe("reported patches in flight together", () => {
  it("are applied in arrival order, each with its own version, journaled in order, one refused alone", async () => {
    const store = await openStore(await tempDir());
    const twins = new Twins(store);
    const journaled: Array<Record<string, unknown>> = [];
    twins.journal = {
      entries: (clientId, patches) => {
        expect(clientId).toBe("dev/mod");
        journaled.push(...patches);
        return {
          queues: ["journal"],
          messages: patches.map((p) => ({ body: Buffer.from(JSON.stringify(p)) })),
        };
      },
      written: () => undefined,
    };
    const big = "x".repeat(33 * 1024);
    const patches = Array.from({ length: 40 }, (_, i) =>
      i === 17 ? { blob: big } : { n: i, [`k${i % 5}`]: i },
    );
    const results = await Promise.allSettled(patches.map((p) => twins.patchReported("dev/mod", p)));
    const versions = results.map((r) => (r.status === "fulfilled" ? r.value : "refused"));
    // Version 1 is the empty twin's: the 39 accepted patches are versions 2..40, in order.
    const expected: Array<number | string> = [];
    for (let i = 0, v = 2; i < 40; i++) expected.push(i === 17 ? "refused" : v++);
    expect(versions).toEqual(expected);
    expect(results[17]).toMatchObject({ status: "rejected", reason: { code: "TWIN_INVALID" } });
    const twin = await twins.get("dev/mod");
    expect(twin.reported.version).toBe(40);
    expect(twin.reported.properties).toEqual({ n: 39, k0: 35, k1: 36, k2: 37, k3: 38, k4: 39 });
    const kept = (await store.read("journal")).map((m) => JSON.parse(m.body.toString()));
    expect(kept).toEqual(patches.filter((_, i) => i !== 17));
    expect(journaled).toEqual(kept);
    // A patch refused by the store (full) changes neither the twin nor the journal.
    await store.configure({ maxSizeBytes: (await store.stats()).bytes });
    await expect(twins.patchReported("dev/mod", { n: 100 })).rejects.toMatchObject({ code: "STORE_FULL" });
    expect(await twins.get("dev/mod")).toEqual(twin);
    expect(await store.read("journal")).toHaveLength(39);
  });

  it("arriving while their twin is written wait for it and follow in order", async () => {
    const store = await openStore(await tempDir());
    const twins = new Twins(store);
    const first = Array.from({ length: 10 }, (_, i) => twins.patchReported("dev", { [`a${i}`]: i }));
    // The first batch is being read and written now; these join the next one.
    await new Promise((resolve) => setImmediate(resolve));
    const second = Array.from({ length: 10 }, (_, i) => twins.patchReported("dev", { [`b${i}`]: i }));
    expect(await Promise.all([...first, ...second])).toEqual(Array.from({ length: 20 }, (_, i) => i + 2));
    expect(Object.keys((await twins.get("dev")).reported.properties)).toHaveLength(20);
  });
});
