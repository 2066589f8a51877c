/** Devices that keep many QoS 1 publishes in flight against a hub process, for stop and kill tests. */
import type { Packet } from "mqtt-packet";
import { startHub, stopHub } from "./hub.js";
import { connectedRaw } from "./mqtt-raw.js";

/** Publishes each device keeps unanswered at once, so a stop or kill finds many in flight. */
export const WINDOW = 32;

/** A device publishing `<id>:<seq>` at QoS 1 with up to {@link WINDOW} in flight until the hub goes. */
export class PipelinedDevice {
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
export async function provisioned(dir: string, n: number): Promise<Map<string, string>> {
  const hub = await startHub(dir);
  const keys = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const d = await hub.registry.createDevice({ deviceId: `dev${i}` });
    keys.set(d.deviceId, d.authentication.symmetricKey?.primaryKey ?? "");
  }
  await stopHub(hub);
  return keys;
}

export function processConfig(dir: string, port: number, extra: object = {}): object {
  return {
    hostname: "localhost",
    dataDir: dir,
    listen: { host: "127.0.0.1", mqtts: port, https: 0, amqps: false },
    ...extra,
  };
}
