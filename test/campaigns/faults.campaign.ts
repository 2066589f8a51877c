/**
 * The SIGKILL campaign: an edge hub process is SIGKILLed at random moments (FAULTS_KILLS
 * rounds, 30 by default; 0-2.8 s after the devices resumed) and restarted on its data
 * while 20 devices publish QoS 1 with sequence numbers and reused `$.mid`s, and its uplink
 * (a relay, test/helpers/proxy.ts) flaps: cut or black-holed for 0.3-2 s every 1-3 s.
 * Each round checks that the hub came back, every device resumed, and what the parent
 * holds so far has no gap, no reordering and no merged message; at the end, with the
 * uplink back, that every acknowledged message is at the parent (per device, exact).
 * Every round and device is one check of the `N passed, N failed` tally.
 */
import { describe, expect, it } from "vitest";
import { eventually } from "../helpers/fixtures.js";
import { type HubProcess, hubProcess } from "../helpers/process.js";
import { site } from "../helpers/site.js";
import { describeCheck, ParentView } from "./lib/parent-view.js";
import { SeqDevice } from "./lib/seq-device.js";

const KILLS = Number(process.env.FAULTS_KILLS ?? 30);
const DEVICES = Array.from({ length: 20 }, (_, i) => `dev-${String(i).padStart(2, "0")}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const between = (lo: number, hi: number) => lo + Math.random() * (hi - lo);

/** Every fifth device sends one constant `$.mid`; the others cycle through four. */
const midOf = (device: string, i: number) =>
  i % 5 === 0 ? () => `${device}-fixed` : (seq: number) => `m${seq % 4}`;

describe("SIGKILL campaign", () => {
  it(`keeps every acknowledged message through ${KILLS} SIGKILLs of the edge hub with a flapping uplink`, async ({
    task,
  }) => {
    const checks = { passed: 0, failed: 0 };
    task.meta.checks = checks;
    const failures: string[] = [];
    const tally = (ok: boolean, what: string) => {
      if (ok) checks.passed++;
      else {
        checks.failed++;
        failures.push(what);
      }
    };
    const s = await site({}, true, { devices: DEVICES });
    const proxy = s.proxy;
    if (!proxy) throw new Error("the site has no relay");
    const devices = DEVICES.map((d, i) => new SeqDevice(d, s.keys.get(d) ?? "", midOf(d, i)));
    const view = new ParentView(DEVICES);
    const started = Date.now();
    for (const d of devices) d.start(s.gateway.port, s.gateway.ca, () => between(20, 60));

    let flapping = true;
    let flaps = 0;
    const flapper = (async () => {
      while (flapping) {
        await sleep(between(1000, 3000));
        if (!flapping) break;
        if (Math.random() < 0.5) proxy.cut();
        else proxy.blackhole();
        flaps++;
        await sleep(between(300, 2000));
        proxy.restore();
      }
    })();

    let edge: HubProcess = s.edge;
    for (let round = 1; round <= KILLS; round++) {
      const ackedBefore = devices.map((d) => d.acked.length);
      // Any moment: right after the devices resumed (the drain restarting) to seconds into the load.
      const waited = Math.round(between(0, 2800));
      await sleep(waited);
      const ackedAtKill = devices.reduce((n, d) => n + d.acked.length, 0);
      await edge.stop("SIGKILL");
      const t0 = Date.now();
      let problem = "";
      try {
        edge = await hubProcess(s.edgeDir, s.config);
      } catch (err) {
        problem = `did not restart: ${(err as Error).message.slice(0, 500)}`;
      }
      const restartMs = Date.now() - t0;
      // Every device resumed: a PUBACK from the new process (more than it had at the kill).
      const atKill = devices.map((d) => d.acked.length);
      if (!problem)
        await eventually("every device acknowledged after the restart", () =>
          devices.every((d, i) => d.acked.length > (atKill[i] ?? 0)),
        ).catch(() => {
          problem = `devices not resumed: ${devices.filter((d, i) => d.acked.length <= (atKill[i] ?? 0)).map((d) => d.id)}`;
        });
      await view.refresh(s.root);
      const bad = devices.map((d) => view.check(d.id, d.acked, d.mid, false)).filter((c) => !c.ok);
      const faults = devices.flatMap((d) => d.faults.splice(0));
      if (bad.length) problem += ` ${bad.map(describeCheck).join("; ")}`;
      if (faults.length) problem += ` protocol faults: ${faults.slice(0, 3).join("; ")}`;
      const progressed = devices.reduce((n, d, i) => n + d.acked.length - (ackedBefore[i] ?? 0), 0);
      console.log(
        `round ${round}/${KILLS}: killed after ${waited} ms (${ackedAtKill} acked in all), back in ${restartMs} ms, ${progressed} acked this round, ${view.delivered} at the parent, ${flaps} flaps: ${problem ? `FAIL${problem}` : "ok"}`,
      );
      tally(problem === "", `round ${round}: ${problem}`);
    }

    flapping = false;
    await flapper;
    proxy.restore();
    await Promise.all(devices.map((d) => d.stop()));
    const acked = devices.reduce((n, d) => n + d.acked.length, 0);
    // The drain: until every acknowledged message is at the parent, or none came for 5 s.
    let last = -1;
    for (let quietSince = Date.now(); Date.now() - quietSince < 5000; await sleep(200)) {
      await view.refresh(s.root);
      if (devices.every((d) => view.check(d.id, d.acked, d.mid, true).ok)) break;
      if (view.delivered !== last) {
        last = view.delivered;
        quietSince = Date.now();
      }
    }
    let duplicates = 0;
    for (const d of devices) {
      const c = view.check(d.id, d.acked, d.mid, true);
      duplicates += c.duplicates;
      if (!c.ok) console.log(`FAIL ${describeCheck(c)}`);
      tally(c.ok, describeCheck(c));
    }
    const timeouts = devices.reduce((n, d) => n + d.timeouts, 0);
    console.log(
      `${KILLS} kills, ${flaps} uplink flaps in ${Math.round((Date.now() - started) / 1000)} s: ${acked} acknowledged, ${view.delivered} at the parent, ${duplicates} duplicates, ${timeouts} publishes unanswered for 5 s; ${checks.passed} passed, ${checks.failed} failed`,
    );
    await edge.stop("SIGKILL");
    expect(failures).toEqual([]);
  }, 600_000);
});
