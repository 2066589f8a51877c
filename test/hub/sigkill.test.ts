/**
 * `edgehub start` SIGKILLed mid-ingest loses no acknowledged message, under both
 * durabilities: "fsync" syncs the WAL before the PUBACK, "wal" writes it (the kernel keeps
 * what a killed process wrote). Only a power loss separates them (test/campaigns/powercut-*).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DURABILITIES } from "../../ts/index.js";
import { rootEvents } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { startHub, stopHub } from "../helpers/hub.js";
import { PipelinedDevice, processConfig, provisioned, WINDOW } from "../helpers/pipelined.js";
import { freePort, hubProcess } from "../helpers/process.js";

const DEVICES = 8;

describe.each(DURABILITIES)("edgehub start with durability %s, SIGKILLed", (durability) => {
  it("keeps every acknowledged message across a kill mid-ingest", async () => {
    const dir = await tempDir();
    const keys = await provisioned(dir, DEVICES);
    const port = await freePort();
    const proc = await hubProcess(dir, processConfig(dir, port, { durability }));
    const ca = await readFile(join(dir, "certs", "ca.pem"), "utf8");
    const devices = [...keys].map(([id, key]) => new PipelinedDevice(id, key, port, ca));
    const acked = () => devices.reduce((n, d) => n + d.acked.length, 0);
    await eventually("steady ingest", () => acked() > DEVICES * WINDOW * 4);
    const code = await proc.stop("SIGKILL");
    await Promise.all(devices.map((d) => d.done));
    expect(code).toBeNull(); // killed by the signal, no exit code

    const hub = await startHub(dir);
    try {
      const stored = new Set((await rootEvents(hub)).map((m) => m.body.toString()));
      const lost = devices.flatMap((d) => d.acked.filter((b) => !stored.has(b)));
      process.stdout.write(
        `durability ${durability}, SIGKILL mid-ingest: ${acked()} acknowledged, ${stored.size} stored, ${lost.length} acknowledged and missing\n`,
      );
      expect(lost).toEqual([]);
      expect(acked()).toBeGreaterThan(0);
    } finally {
      await stopHub(hub);
    }
  }, 60_000);
});
