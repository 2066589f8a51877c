/**
 * A device of the fault campaigns: a raw MQTT client that publishes QoS 1 telemetry with a
 * sequence number (property `seq`, body `<device>:<seq>`) and a `$.mid` it reuses (distinct
 * messages, same message id), one at a time; it remembers which seqs were acknowledged.
 * When the hub goes away it reconnects and sends the unacknowledged seq again, as an MQTT
 * client resends what it holds.
 */
import { connectedRaw, publishSeq } from "../../helpers/mqtt-raw.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class SeqDevice {
  /** Acknowledged seqs, in the order of their PUBACKs (the order sent). */
  readonly acked: number[] = [];
  /** Answers that were not the PUBACK expected: a protocol fault of the hub. */
  readonly faults: string[] = [];
  /** Publishes left unanswered for 5 s (the connection is dropped and the seq sent again). */
  timeouts = 0;
  #stopping = false;
  #running: Promise<void> | undefined;

  constructor(
    readonly id: string,
    readonly key: string,
    /** The `$.mid` of message `seq`: reused across seqs on purpose. */
    readonly mid: (seq: number) => string,
  ) {}

  /** Starts publishing to the hub at `port` (CA `ca`), pausing `pauseMs()` after each PUBACK. */
  start(port: number, ca: string, pauseMs: () => number): void {
    this.#running = this.#run(port, ca, pauseMs);
  }

  /** Stops after the publish under way is answered (or its connection is gone). */
  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
  }

  async #run(port: number, ca: string, pauseMs: () => number): Promise<void> {
    let seq = 0;
    while (!this.#stopping) {
      const c = await connectedRaw(port, ca, this.id, this.key).catch(() => undefined);
      if (!c) {
        await sleep(50); // the hub is restarting
        continue;
      }
      try {
        while (!this.#stopping) {
          const body = Buffer.from(`${this.id}:${seq}`);
          if (!(await publishSeq(c, this.id, seq, body, `&%24.mid=${this.mid(seq)}`))) break;
          this.acked.push(seq++);
          await sleep(pauseMs());
        }
      } catch (err) {
        const message = (err as Error).message;
        if (message.startsWith("expected PUBACK")) this.faults.push(message);
        else this.timeouts++;
      } finally {
        c.end();
      }
    }
  }
}
