import mqtt, { type Packet } from "mqtt-packet";
import { describe, expect, it } from "vitest";
import { PacketReader, type ReadFailure } from "../../ts/protocol/packet-reader.js";

function reader(max = 1 << 20) {
  const packets: Packet[] = [];
  const failures: ReadFailure[] = [];
  const r = new PacketReader(
    max,
    (p) => packets.push(p),
    (f) => failures.push(f),
  );
  return { r, packets, failures };
}

const publish = (i: number, qos: 0 | 1, size: number) =>
  mqtt.generate({
    cmd: "publish",
    topic: `devices/d${i}/messages/events/k=${i}`,
    payload: Buffer.alloc(size, i & 0xff),
    qos,
    messageId: qos ? (i % 65535) + 1 : undefined,
    retain: false,
    dup: false,
  } as Parameters<typeof mqtt.generate>[0]);

describe("packet reader", () => {
  it("decodes the same packets however the stream is cut", () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      parts.push(publish(i, (i % 2) as 0 | 1, (i * 977) % 70_000));
      if (i % 17 === 0) parts.push(mqtt.generate({ cmd: "pingreq" }));
      if (i % 31 === 0) parts.push(mqtt.generate({ cmd: "puback", messageId: i + 1 }));
    }
    const stream = Buffer.concat(parts);
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const results = [1, 3, 1000, 16_384, stream.length].map((maxCut) => {
      const { r, packets, failures } = reader();
      for (let at = 0; at < stream.length; ) {
        const n = maxCut === 1 ? 1 : 1 + rand(maxCut);
        r.push(Buffer.from(stream.subarray(at, at + n)));
        at += n;
      }
      expect(failures).toEqual([]);
      return packets.map((p) =>
        p.cmd === "publish"
          ? `${p.topic}|${p.qos}|${p.messageId}|${Buffer.from(p.payload).toString("base64")}`
          : p.cmd === "puback"
            ? `puback ${p.messageId}`
            : p.cmd,
      );
    });
    expect(results[0]).toHaveLength(200 + 12 + 7);
    for (const r of results) expect(r).toEqual(results[0]);
    expect(results[0]?.slice(0, 3)).toEqual([
      "devices/d0/messages/events/k=0|0|undefined|",
      "pingreq",
      "puback 1",
    ]);
  });

  it("decodes a PUBACK in place as mqtt-packet does, and leaves other forms of it to mqtt-packet", () => {
    const { r, packets, failures } = reader();
    r.push(Buffer.from([0x40, 2, 0xab, 0xcd, 0x40, 2, 0, 1]));
    expect(packets).toEqual([
      { cmd: "puback", messageId: 0xabcd },
      { cmd: "puback", messageId: 1 },
    ]);
    // Flags other than 0 are malformed in MQTT 3.1.1: mqtt-packet says so.
    r.push(Buffer.from([0x41, 2, 0, 8]));
    expect(failures).toEqual([
      { reason: "malformed-packet", detail: "Invalid header flag bits, must be 0x0 for puback packet" },
    ]);
  });

  it("refuses a packet larger than the limit from its fixed header, before buffering it", () => {
    const { r, packets, failures } = reader(1000);
    const big = publish(1, 1, 5000);
    r.push(big.subarray(0, 5));
    expect(failures).toEqual([{ reason: "packet-too-large", bytes: big.length }]);
    r.push(big.subarray(5));
    expect(packets).toEqual([]);
  });

  it("refuses a remaining length over four bytes, QoS 3 and a PUBLISH shorter than its topic", () => {
    for (const bytes of [
      [0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
      [0x36, 0x03, 0x00, 0x01, 0x61],
      [0x32, 0x03, 0x00, 0x09, 0x61],
      [0x32, 0x03, 0x00, 0x01, 0x61],
    ]) {
      const { r, packets, failures } = reader();
      r.push(Buffer.from(bytes));
      expect(packets).toEqual([]);
      expect(failures.map((f) => f.reason)).toEqual(["malformed-packet"]);
    }
  });
});
