import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { routesConfig } from "../../ts/config/config.js";
import { MessageStore } from "../../ts/index.js";
import { IdentityShares } from "../../ts/routing/identity-shares.js";
import { RouteTable } from "../../ts/routing/route-table.js";
import { Router } from "../../ts/routing/router.js";
import { recordSize } from "../../ts/routing/share-records.js";
import { tempDir } from "../helpers/fixtures.js";

const counted = (q: string) => q === "$upstream" || q.startsWith("$inputs/");
const routes = routesConfig("routes", {
  up: "FROM /messages/* INTO $upstream",
  fan: "FROM /messages/* WHERE fan = '1' INTO BrokeredEndpoint(\"/modules/filter/inputs/a\")",
});
const SENDERS = [{ deviceId: "a" }, { deviceId: "b" }, { deviceId: "b", moduleId: "m" }];
const id = (s: { deviceId: string; moduleId?: string }) =>
  s.moduleId === undefined ? s.deviceId : `${s.deviceId}/${s.moduleId}`;

type Op =
  | { kind: "send"; sender: number; bytes: number; fan: boolean; burst: number }
  | { kind: "ack"; queue: "$upstream" | "$inputs/edge1/filter"; fraction: number }
  | { kind: "crash"; saved: boolean };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("send" as const),
      sender: fc.nat(2),
      bytes: fc.nat(2000),
      fan: fc.boolean(),
      burst: fc.integer({ min: 1, max: 4 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("ack" as const),
      queue: fc.constantFrom("$upstream" as const, "$inputs/edge1/filter" as const),
      fraction: fc.double({ min: 0, max: 1, noNaN: true }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const), saved: fc.boolean() }) },
);

/** Live bytes per sender, read from the records themselves. */
async function truth(store: MessageStore): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const q of (await store.stats()).queues) {
    for (const m of await store.read(q.name, { limit: 100_000 })) {
      const cmid = m.properties["$.cmid"];
      const sender = cmid === undefined ? `${m.properties["$.cdid"]}` : `${m.properties["$.cdid"]}/${cmid}`;
      out.set(sender, (out.get(sender) ?? 0) + recordSize(m.properties, m.body.length));
    }
  }
  return out;
}

describe("identity shares against the records (property)", () => {
  it("never count less than a sender has stored, nor more than a bounded slack, through acks and crashes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30 }), async (ops) => {
        const dir = await tempDir();
        let store = await MessageStore.open(dir, { durability: "wal" });
        const open = async () => {
          const shares = await IdentityShares.open(store, counted, 2 ** 40);
          const router = new Router(store, new RouteTable(routes, "$upstream", () => "edge1", true));
          router.setShares(shares);
          return { shares, router };
        };
        let { shares, router } = await open();
        const everStored = new Map<string, number>();
        try {
          for (const o of ops) {
            if (o.kind === "send") {
              const s = SENDERS[o.sender] as (typeof SENDERS)[number];
              // A burst is one turn: one store call for all of it.
              const sent = Array.from(
                { length: o.burst },
                () =>
                  new Promise<unknown>((resolve) =>
                    router.accept(
                      { ...s, body: Buffer.alloc(o.bytes), properties: o.fan ? { fan: "1" } : {} },
                      resolve,
                    ),
                  ),
              );
              expect(await Promise.all(sent)).toEqual(sent.map(() => null));
            } else if (o.kind === "ack") {
              const q = (await store.stats()).queues.find((x) => x.name === o.queue);
              if (q && q.count > 0)
                await store.ack(o.queue, q.head + Math.floor(o.fraction * (q.tail - 1 - q.head)));
            } else {
              if (o.saved) await shares.save();
              await store.close();
              await shares.close();
              store = await MessageStore.open(dir, { durability: "wal" });
              ({ shares, router } = await open());
            }
            const real = await truth(store);
            for (const [sender, bytes] of real)
              everStored.set(sender, Math.max(everStored.get(sender) ?? 0, bytes));
            const status = shares.status();
            for (const s of SENDERS) {
              const c = status.top.find((t) => t.identity === id(s))?.bytes ?? 0;
              const live = real.get(id(s)) ?? 0;
              expect(c).toBeGreaterThanOrEqual(live);
              // Slack: about one mark's span per queue (marks span ≥ 1/32 of the live bytes
              // when made, two merged by thinning), and whole store calls of up to 4 copies.
              expect(c - live).toBeLessThanOrEqual((everStored.get(id(s)) ?? 0) / 8 + 2 * 4 * 2100 * 2);
            }
          }
        } finally {
          await shares.close();
          await store.close();
        }
      }),
      { numRuns: 40 },
    );
  }, 120_000);
});
