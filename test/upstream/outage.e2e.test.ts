import { describe, expect, it } from "vitest";
import { rootEvents, startRoot } from "../helpers/edge.js";
import { stopHub } from "../helpers/hub.js";
import { hubProcess } from "../helpers/process.js";
import type { BlackholeProxy } from "../helpers/proxy.js";
import { expectAll, LEAVES, openLeaves, send, site } from "../helpers/site.js";

describe("store and forward through outages", () => {
  it("keeps children sending while the parent is down and across an offline restart of the edge, then delivers everything in order", async () => {
    const s = await site();
    let clients = await openLeaves(s);
    await send(clients, 0, 10);
    await expectAll(s.root, 10);

    // The parent goes away: children keep sending, acknowledged by the edge alone.
    await stopHub(s.root);
    await send(clients, 10, 20);
    await Promise.all(clients.map((c) => c.close()));

    // The edge restarts while offline: it starts from its data dir, and children log in
    // against its cached scope.
    expect(await s.edge.stop("SIGTERM")).toBe(0);
    await hubProcess(s.edgeDir, s.config);
    clients = await openLeaves(s);
    await send(clients, 20, 30);

    // The parent returns on the same address.
    const root = await startRoot(s.rootDir, { listen: s.rootListen });
    const t0 = Date.now();
    const duplicates = await expectAll(root, 30);
    console.log(
      `parent back -> 60 stored messages delivered in ${Date.now() - t0} ms (${duplicates} duplicates)`,
    );
    expect(duplicates).toBeLessThanOrEqual(LEAVES.length * 100);
  });

  it("notices a black-holed route by its silence, and resumes when the route returns", async () => {
    const s = await site({ keepaliveSecs: 1, ackTimeoutMs: 1000 }, true);
    const proxy = s.proxy as BlackholeProxy;
    const clients = await openLeaves(s);
    await send(clients, 0, 5);
    await expectAll(s.root, 5);

    proxy.blackhole();
    await send(clients, 5, 25);
    await s.edge.waitFor(/"upstream-link-(down|stalled)"/, 10_000);
    const before = (await rootEvents(s.root)).length;
    proxy.restore();
    const t0 = Date.now();
    await expectAll(s.root, 25);
    console.log(
      `route back -> ${(await rootEvents(s.root)).length - before} messages delivered in ${Date.now() - t0} ms`,
    );
  });
});
