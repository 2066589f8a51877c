/**
 * What the parent (a root hub) holds of the campaign's devices, read incrementally from its
 * `$events`, and the exact check of it against what the devices had acknowledged: per
 * device, every acknowledged seq at the parent, first arrivals in seq order, each body the
 * one sent with its seq; duplicates (one seq arriving twice) counted apart from merges (an
 * acknowledged seq missing while another message of the device with the same `$.mid`
 * arrived: a duplicate filter that took distinct messages for one) and losses.
 */
import type { EdgeHub } from "../../../ts/index.js";

/** One device's messages at the parent. */
interface Arrivals {
  /** Seqs in order of first arrival. */
  firsts: number[];
  seen: Set<number>;
  /** `$.mid`s of the messages that arrived. */
  mids: Set<string>;
  duplicates: number;
  /** Messages whose body is not the one sent with their seq. */
  garbled: string[];
}

/** The outcome of a check of one device. */
export interface DeviceCheck {
  device: string;
  acked: number;
  delivered: number;
  duplicates: number;
  /** Acknowledged seqs missing while a message with the same `$.mid` arrived. */
  merged: number[];
  /** Acknowledged seqs missing otherwise. */
  lost: number[];
  /** First arrivals that came after a higher seq. */
  outOfOrder: number[];
  garbled: string[];
  ok: boolean;
}

export class ParentView {
  readonly #devices = new Map<string, Arrivals>();
  #from = 0;

  constructor(devices: string[]) {
    for (const d of devices)
      this.#devices.set(d, { firsts: [], seen: new Set(), mids: new Set(), duplicates: 0, garbled: [] });
  }

  /** Reads what arrived at `root` since the last call. */
  async refresh(root: EdgeHub): Promise<void> {
    for (;;) {
      const batch = await root.store.read("$events", { from: this.#from, limit: 5000 });
      const last = batch.at(-1);
      if (!last) return;
      for (const m of batch) {
        const device = m.properties["$.cdid"] ?? "";
        const a = this.#devices.get(device);
        if (!a) continue;
        const seq = Number(m.properties.seq);
        if (m.body.toString() !== `${device}:${seq}`) a.garbled.push(`seq ${seq}: ${m.body.toString()}`);
        a.mids.add(m.properties["$.mid"] ?? "");
        if (a.seen.has(seq)) a.duplicates++;
        else {
          a.seen.add(seq);
          a.firsts.push(seq);
        }
      }
      this.#from = last.offset + 1;
    }
  }

  /** Messages of the devices at the parent, duplicates aside. */
  get delivered(): number {
    let n = 0;
    for (const a of this.#devices.values()) n += a.seen.size;
    return n;
  }

  /**
   * Checks `device` against the seqs it had acknowledged. `final`: every acknowledged seq
   * must have arrived; otherwise (the drain under way) every one below the highest arrival,
   * since the parent gets a device's messages in the order they were stored.
   */
  check(device: string, acked: readonly number[], mid: (seq: number) => string, final: boolean): DeviceCheck {
    const a = this.#devices.get(device);
    if (!a) throw new Error(`${device} is not a campaign device`);
    let highest = -1;
    const outOfOrder: number[] = [];
    for (const s of a.firsts) {
      if (s < highest) outOfOrder.push(s);
      highest = Math.max(highest, s);
    }
    const merged: number[] = [];
    const lost: number[] = [];
    for (const s of acked) {
      if (a.seen.has(s) || (!final && s > highest)) continue;
      (a.mids.has(mid(s)) ? merged : lost).push(s);
    }
    return {
      device,
      acked: acked.length,
      delivered: a.seen.size,
      duplicates: a.duplicates,
      merged,
      lost,
      outOfOrder,
      garbled: a.garbled,
      ok: merged.length === 0 && lost.length === 0 && outOfOrder.length === 0 && a.garbled.length === 0,
    };
  }
}

/** A failed check in a line (the first few seqs of each kind). */
export function describeCheck(c: DeviceCheck): string {
  const few = (xs: readonly unknown[]) =>
    `${xs.length}${xs.length ? ` [${xs.slice(0, 5).join(", ")}${xs.length > 5 ? ", …" : ""}]` : ""}`;
  return `${c.device}: ${c.acked} acked, ${c.delivered} at the parent, ${c.duplicates} duplicates; merged ${few(c.merged)}, lost ${few(c.lost)}, out of order ${few(c.outOfOrder)}, garbled ${few(c.garbled)}`;
}
