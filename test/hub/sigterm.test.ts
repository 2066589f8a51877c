/**
 * `edgehub start` stops cleanly on SIGTERM: a real hub process, devices publishing QoS 1
 * with many messages in flight, SIGTERM mid-ingest; it exits 0 and, restarted on the same
 * data dir, holds every message that got a PUBACK. A second signal cuts the stop short.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { rootEvents } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { startHub, stopHub } from "../helpers/hub.js";
import { connectedRaw } from "../helpers/mqtt-raw.js";
import { freePort, hubProcess } from "../helpers/process.js";

const DEVICES = 16;
/** Publishes each device keeps unanswered at once, so the stop finds many in flight. */
const WINDOW = 32;

/** A device publishing `<id>:<seq>` at QoS 1 with up to {@link WINDOW} in flight until the hub goes. */
class PipelinedDevice {
  readonly acked: string[] = [];
  sent = 0;
  readonly done: Promise<void>;

  constructor(id: string, key: string, port: number, ca: string) {
    this.done = this.#run(id, key, port, ca);
  }

  get inFlight(): number {
    return this.sent - this.acked.length;
  }

  async #run(id: string, key: string, port: number, ca: string): Promise<void> {
    const c = await connectedRaw(port, ca, id, key);
    const pending = new Map<number, string>();
    const publish = () => {
      const body = `${id}:${this.sent}`;
      const messageId = (this.sent % 65535) + 1;
      this.sent++;
      pending.set(messageId, body);
      c.send({
        cmd: "publish",
        topic: `devices/${id}/messages/events/`,
        payload: Buffer.from(body),
        qos: 1,
        messageId,
        retain: false,
        dup: false,
      } as Packet);
    };
    for (let i = 0; i < WINDOW; i++) publish();
    for (;;) {
      const p = await c.next(15_000);
      if (p === "closed") return;
      if (p.cmd !== "puback") throw new Error(`${id}: expected a PUBACK, got ${p.cmd}`);
      const body = pending.get(p.messageId ?? -1);
      if (body === undefined) throw new Error(`${id}: PUBACK for ${p.messageId}, which is not in flight`);
      pending.delete(p.messageId ?? -1);
      this.acked.push(body);
      publish();
    }
  }
}

/** A data dir with `n` devices registered; returns their keys. */
async function provisioned(dir: string, n: number): Promise<Map<string, string>> {
  const hub = await startHub(dir);
  const keys = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const d = await hub.registry.createDevice({ deviceId: `dev${i}` });
    keys.set(d.deviceId, d.authentication.symmetricKey?.primaryKey ?? "");
  }
  await stopHub(hub);
  return keys;
}

function processConfig(dir: string, port: number): object {
  return { hostname: "localhost", dataDir: dir, listen: { host: "127.0.0.1", mqtts: port, https: 0 } };
}

describe("edgehub start on SIGTERM", () => {
  it("stops mid-ingest with exit 0, and every acknowledged message is there after a restart", async () => {
    const dir = await tempDir();
    const keys = await provisioned(dir, DEVICES);
    const port = await freePort();
    const proc = await hubProcess(dir, processConfig(dir, port));
    const ca = await readFile(join(dir, "certs", "ca.pem"), "utf8");
    const devices = [...keys].map(([id, key]) => new PipelinedDevice(id, key, port, ca));
    const acked = () => devices.reduce((n, d) => n + d.acked.length, 0);
    await eventually("steady ingest", () => acked() > DEVICES * WINDOW * 4);

    const inFlightAtSignal = devices.reduce((n, d) => n + d.inFlight, 0);
    const code = await proc.stop("SIGTERM");
    await Promise.all(devices.map((d) => d.done));
    expect(proc.output()).toContain("SIGTERM: stopping");
    expect(code).toBe(0);

    const hub = await startHub(dir);
    const stored = new Set((await rootEvents(hub)).map((m) => m.body.toString()));
    const lost = devices.flatMap((d) => d.acked.filter((b) => !stored.has(b)));
    process.stdout.write(
      `SIGTERM with ${inFlightAtSignal} publishes in flight: ${acked()} acknowledged, ${stored.size} stored, ${lost.length} acknowledged and missing\n`,
    );
    expect(lost).toEqual([]);
    // The stop answered what it had read: nothing is stored without its PUBACK (a stop that
    // closed the connections at once left hundreds so, for the clients to send again).
    expect(stored.size).toBe(acked());
    expect(stored.size).toBeLessThan(devices.reduce((n, d) => n + d.sent, 0));
  }, 60_000);

  it("exits at once with 128 + the signal's number on a second signal", async () => {
    const dir = await tempDir();
    const keys = await provisioned(dir, 2);
    const port = await freePort();
    const proc = await hubProcess(dir, processConfig(dir, port));
    const ca = await readFile(join(dir, "certs", "ca.pem"), "utf8");
    const devices = [...keys].map(([id, key]) => new PipelinedDevice(id, key, port, ca));
    await eventually("ingest", () => devices.every((d) => d.acked.length > 0));
    // Two different signals, so the kernel never merges them into one; whichever the process
    // takes first starts the clean stop, the other cuts it short: 128 + 2 or 128 + 15.
    process.kill(proc.pid, "SIGINT");
    const code = await proc.stop("SIGTERM");
    await Promise.all(devices.map((d) => d.done));
    expect([130, 143]).toContain(code);
  });
});
