/**
 * The queue consumer's state table (docs/queue-consumer.md), row by row, against a real
 * RocksDB store (wrapped where a row needs a held or failing call) and a manual clock.
 */
import { describe, expect, it } from "vitest";
import type { Clock } from "../../ts/queue/clock.js";
import { type ConsumerOptions, QueueConsumer, type Source } from "../../ts/queue/consumer.js";
import type { MessageStore, StoredMessage } from "../../ts/store/index.js";
import { eventually, openStore, tempDir } from "../helpers/fixtures.js";

/** Time that moves only when the test says so. */
class ManualClock implements Clock {
  t = 1_000_000;
  #tasks: { at: number; fn: () => void }[] = [];
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const task = { at: this.t + ms, fn };
    this.#tasks.push(task);
    return () => {
      this.#tasks = this.#tasks.filter((x) => x !== task);
    };
  }
  advance(ms: number): void {
    this.t += ms;
    for (;;) {
      const due = this.#tasks.filter((x) => x.at <= this.t).sort((a, b) => a.at - b.at)[0];
      if (!due) return;
      this.#tasks = this.#tasks.filter((x) => x !== due);
      due.fn();
    }
  }
}

/** The real store, counting its calls; reads and acks can be held or failed by the test. */
async function spyStore() {
  const store = await openStore(await tempDir());
  const spy = {
    store,
    reads: 0,
    readsOut: 0,
    acks: [] as [string, number][],
    holdRead: undefined as ((release: () => void) => void) | undefined,
    failRead: 0,
    failAck: 0,
  };
  const wrapped = {
    read: async (queue: string, o?: Parameters<MessageStore["read"]>[1]) => {
      spy.reads++;
      spy.readsOut++;
      try {
        if (spy.failRead > 0) {
          spy.failRead--;
          throw new Error("disk says no");
        }
        const got = await store.read(queue, o);
        const hold = spy.holdRead;
        if (hold) {
          spy.holdRead = undefined;
          await new Promise<void>((resolve) => hold(resolve));
        }
        return got;
      } finally {
        spy.readsOut--;
      }
    },
    ack: async (queue: string, offset: number) => {
      if (spy.failAck > 0) {
        spy.failAck--;
        throw new Error("ack refused");
      }
      spy.acks.push([queue, offset]);
      await store.ack(queue, offset);
    },
  };
  return { spy, wrapped };
}

async function fill(store: MessageStore, queue: string, bodies: string[]): Promise<void> {
  await store.append(
    queue,
    bodies.map((b) => ({ body: Buffer.from(b) })),
  );
}

async function ackedUpTo(store: MessageStore, queue: string): Promise<number> {
  return (await store.stats()).queues.find((q) => q.name === queue)?.ackedUpTo ?? -1;
}

interface Handed {
  m: StoredMessage;
  source: Source;
  epoch: number;
}

async function setup(options: Partial<ConsumerOptions> = {}) {
  const { spy, wrapped } = await spyStore();
  const clock = new ManualClock();
  const got: Handed[] = [];
  const events: string[] = [];
  const consumer = new QueueConsumer(
    wrapped,
    { deliver: (m, source, epoch) => got.push({ m, source, epoch }) },
    {
      window: 100,
      windowBytes: 1 << 20,
      readBatch: 10,
      clock,
      onCheckpoint: (q, upTo) => events.push(`checkpoint ${q} ${upTo}`),
      onDrained: () => events.push("drained"),
      onError: (what, q) => events.push(`error ${what} ${q}`),
      ...options,
    },
  );
  const bodies = () => got.map((h) => `${h.source.queue}:${h.m.body.toString()}`);
  /** Every read made has returned (and what it read was handed over). */
  const settle = () => eventually("reads returned", () => spy.readsOut === 0);
  /** Done with every message handed over, in order. */
  const doneAll = () => {
    for (const h of got.splice(0)) consumer.done(h.source, h.m, h.epoch);
  };
  /** The ack batcher's turn ends, and its store calls return. */
  const flushAcks = async () => {
    clock.advance(0);
    await consumer.settled();
  };
  /** Stores `stored` in `q`, resumes, and waits until `handed` messages are handed over. */
  const start = async (stored: string[], handed: number) => {
    await fill(spy.store, "q", stored);
    consumer.add("q");
    consumer.resume();
    await eventually(`${handed} handed`, () => got.length === handed);
    await settle();
  };
  /** Done with everything handed over, and the acknowledgements written. */
  const finishAll = async () => {
    doneAll();
    await settle();
    await flushAcks();
  };
  return { spy, clock, consumer, got, events, bodies, settle, doneAll, flushAcks, start, finishAll };
}

describe("queue consumer state table", () => {
  it("C1, C3: paused reads nothing; resume reads from the checkpoint and hands over in order", async () => {
    const t = await setup();
    await fill(t.spy.store, "q", ["a", "b", "c"]);
    await t.spy.store.ack("q", 0);
    t.consumer.add("q", await ackedUpTo(t.spy.store, "q"));
    t.consumer.stored("q");
    await t.settle();
    expect(t.spy.reads).toBe(0);
    expect(t.consumer.state).toBe("paused");
    t.consumer.resume();
    await eventually("handed", () => t.got.length === 2);
    await t.settle();
    expect(t.bodies()).toEqual(["q:b", "q:c"]);
    expect(t.got.map((h) => h.epoch)).toEqual([0, 0]);
    expect(t.consumer.outstanding).toBe(2);
  });

  it("C4, C7, C8, C10: done moves the checkpoint; one store ack per turn; drained once all is written", async () => {
    const t = await setup();
    await t.start(["a", "b", "c"], 3);
    const [a, b, c] = t.got.splice(0) as [Handed, Handed, Handed];
    // Out of order: the checkpoint waits for the first.
    t.consumer.done(c.source, c.m, c.epoch);
    t.consumer.done(b.source, b.m, b.epoch);
    await t.flushAcks();
    expect(t.spy.acks).toEqual([]);
    expect(t.consumer.idle).toBe(false);
    t.consumer.done(a.source, a.m, a.epoch);
    await t.settle();
    await t.flushAcks();
    expect(t.spy.acks).toEqual([["q", 2]]);
    expect(await ackedUpTo(t.spy.store, "q")).toBe(2);
    expect(t.events).toEqual(["checkpoint q 2", "drained"]);
    expect(t.consumer.idle).toBe(true);
  });

  it("C2, C5: a message stored while a read is under way is read after it (the drain stall)", async () => {
    const t = await setup();
    await t.start(["one"], 1);
    // The next read finds nothing stored yet; it is held while "two" is stored.
    let release: (() => void) | undefined;
    t.spy.holdRead = (r) => {
      release = r;
    };
    t.consumer.wake();
    t.consumer.stored("q");
    await eventually("read held", () => release !== undefined);
    await fill(t.spy.store, "q", ["two"]);
    t.consumer.stored("q");
    release?.();
    // Nothing is acknowledged (the client holds its PUBACKs): "two" still comes.
    await eventually("two", () => t.got.length === 2);
    expect(t.bodies()).toEqual(["q:one", "q:two"]);
  });

  it("C6: the window bounds messages past the checkpoint and bytes out; done frees it", async () => {
    const t = await setup({ window: 2, readBatch: 10 });
    await t.start(["a", "b", "c", "d"], 2);
    expect(t.bodies()).toEqual(["q:a", "q:b"]);
    const [a] = t.got as [Handed];
    t.consumer.done(a.source, a.m, a.epoch);
    await eventually("c", () => t.got.length === 3);
    await t.settle();
    expect(t.bodies()).toEqual(["q:a", "q:b", "q:c"]);

    const big = await setup({ windowBytes: 200 });
    await big.spy.store.append("q", [{ body: Buffer.alloc(150) }, { body: Buffer.alloc(150) }]);
    big.consumer.add("q");
    big.consumer.resume();
    await eventually("one", () => big.got.length === 1);
    await big.settle();
    expect(big.consumer.heldBytes).toBeGreaterThanOrEqual(200);
    expect(big.got).toHaveLength(1);
    big.doneAll();
    await eventually("the second", () => big.got.length === 1 && big.got[0]?.m.offset === 1);
  });

  it("C9: a failed store ack is reported and asked again with the next move", async () => {
    const t = await setup();
    await t.start(["a", "b"], 2);
    const [a, b] = t.got.splice(0) as [Handed, Handed];
    t.spy.failAck = 1;
    t.consumer.done(a.source, a.m, a.epoch);
    await t.flushAcks();
    expect(t.events).toContain("error ack q");
    expect(await ackedUpTo(t.spy.store, "q")).toBe(-1);
    t.consumer.done(b.source, b.m, b.epoch);
    await t.settle();
    await t.flushAcks();
    expect(await ackedUpTo(t.spy.store, "q")).toBe(1);
  });

  it("C11: a failed read is reported and made again after the retry delay on the clock", async () => {
    const t = await setup({ retryReadMs: 1000 });
    await fill(t.spy.store, "q", ["a"]);
    t.spy.failRead = 1;
    t.consumer.add("q");
    t.consumer.resume();
    await t.settle();
    expect(t.events).toEqual(["error read q"]);
    t.consumer.stored("q");
    await t.settle();
    expect(t.spy.reads).toBe(1);
    t.clock.advance(999);
    await t.settle();
    expect(t.spy.reads).toBe(1);
    t.clock.advance(1);
    await eventually("a", () => t.got.length === 1);
  });

  it("C12: pause(forget) lets go of what is out; after resume only what was not done goes again (no resend)", async () => {
    const t = await setup();
    await t.start(["a", "b", "c"], 3);
    const [a, b] = t.got.splice(0) as [Handed, Handed];
    t.consumer.done(a.source, a.m, a.epoch);
    t.consumer.pause(true);
    expect(t.consumer.outstanding).toBe(0);
    // The receiver acknowledged b after the pause: remembered, not handed over again.
    t.consumer.done(b.source, b.m, b.epoch);
    t.consumer.resume();
    await eventually("c again", () => t.got.length === 1);
    await t.settle();
    expect(t.bodies()).toEqual(["q:c"]);
    expect(t.got[0]?.epoch).toBe(1);
    await t.finishAll();
    expect(await ackedUpTo(t.spy.store, "q")).toBe(2);
  });

  it("C13: pause() keeps what is out; done still checkpoints; resume resends nothing (the resubscribe resend)", async () => {
    const t = await setup();
    await t.start(["a", "b"], 2);
    t.consumer.pause();
    await fill(t.spy.store, "q", ["c"]);
    t.consumer.stored("q");
    t.doneAll();
    await t.flushAcks();
    expect(await ackedUpTo(t.spy.store, "q")).toBe(1);
    await t.settle();
    expect(t.got).toEqual([]);
    t.consumer.resume();
    await eventually("c", () => t.got.length === 1);
    await t.settle();
    expect(t.bodies()).toEqual(["q:c"]);
  });

  it("C14: a read that returns while paused is dropped unrecorded and made again after resume", async () => {
    const t = await setup();
    await fill(t.spy.store, "q", ["a", "b"]);
    let release: (() => void) | undefined;
    t.spy.holdRead = (r) => {
      release = r;
    };
    t.consumer.add("q");
    t.consumer.resume();
    await eventually("read held", () => release !== undefined);
    t.consumer.pause();
    release?.();
    await t.settle();
    expect(t.got).toEqual([]);
    t.consumer.resume();
    await eventually("handed once", () => t.got.length === 2);
    await t.settle();
    expect(t.bodies()).toEqual(["q:a", "q:b"]);
  });

  it("C15: a consumer that may not read waits; wake reads once it may", async () => {
    let may = false;
    const t = await setup({ mayRead: () => may });
    await fill(t.spy.store, "q", ["a"]);
    t.consumer.add("q");
    t.consumer.resume();
    await t.settle();
    expect(t.spy.reads).toBe(0);
    may = true;
    t.consumer.wake();
    await eventually("a", () => t.got.length === 1);
  });

  it("C16: live-first after a resume: what is stored from the split goes before the backlog", async () => {
    const t = await setup({ liveFirst: true });
    await fill(t.spy.store, "q", ["old0", "old1", "old2"]);
    t.consumer.add("q");
    await fill(t.spy.store, "q", ["new3", "new4"]);
    t.consumer.resume(3);
    await eventually("all", () => t.got.length === 5);
    await t.settle();
    expect(t.bodies()).toEqual(["q:new3", "q:new4", "q:old0", "q:old1", "q:old2"]);
    await t.finishAll();
    expect(await ackedUpTo(t.spy.store, "q")).toBe(4);
  });

  it("C17: close reads nothing more, and writes the acknowledgements asked", async () => {
    const t = await setup();
    await t.start(["a"], 1);
    t.doneAll();
    t.consumer.close();
    await fill(t.spy.store, "q", ["b"]);
    t.consumer.stored("q");
    await t.flushAcks();
    await t.settle();
    expect(t.got).toEqual([]);
    expect(await ackedUpTo(t.spy.store, "q")).toBe(0);
  });

  it("reads queues by rank: priority 0 first, the base queue last, an urgent store taken at the next read", async () => {
    const t = await setup({ window: 2, readBatch: 2 });
    await fill(t.spy.store, "$c2d/d", ["base0", "base1", "base2", "base3"]);
    await fill(t.spy.store, "$c2d/d/p5", ["p5-0"]);
    t.consumer.add("$c2d/d");
    t.consumer.add("$c2d/d/p5");
    t.consumer.resume();
    await eventually("two", () => t.got.length === 2);
    await t.settle();
    expect(t.bodies()).toEqual(["$c2d/d/p5:p5-0", "$c2d/d:base0"]);
    await fill(t.spy.store, "$c2d/d/p0", ["p0-0"]);
    t.consumer.stored("$c2d/d/p0");
    t.doneAll();
    await eventually("two more", () => t.got.length === 2);
    await t.settle();
    expect(t.bodies()).toEqual(["$c2d/d/p0:p0-0", "$c2d/d:base1"]);
  });
});
