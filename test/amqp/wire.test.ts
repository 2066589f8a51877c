import { once } from "node:events";
import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import { FrameGuard, MAX_FRAME_BYTES } from "../../ts/amqp/index.js";
import { EVENTS_QUEUE } from "../../ts/index.js";
import { rawTls } from "../helpers/amqp.js";
import { tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, connectedDevice, recordingLogger, startHub } from "../helpers/hub.js";

/** AMQP's SASL protocol header, then the AMQP one. */
const SASL_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 3, 1, 0, 0]);
const AMQP_HEADER = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 1, 0, 0]);

function frame(size: number): Buffer {
  const b = Buffer.alloc(Math.min(size, 16));
  b.writeUInt32BE(size, 0);
  return b;
}

describe("the frame bound ahead of rhea", () => {
  it("passes headers and frames up to the bound, split anywhere", () => {
    const stream = Buffer.concat([SASL_HEADER, frame(16), AMQP_HEADER, frame(12), Buffer.alloc(0)]);
    for (let cut = 0; cut <= stream.length; cut++) {
      const guard = new FrameGuard(1024);
      expect(guard.push(stream.subarray(0, cut))).toBeUndefined();
      expect(guard.push(stream.subarray(cut))).toBeUndefined();
    }
  });

  it("stops a frame announced over the bound, or too small to be a frame", () => {
    expect(new FrameGuard(1024).push(Buffer.concat([AMQP_HEADER, frame(1025)]))).toMatch(/over 1024/);
    expect(new FrameGuard(1024).push(Buffer.concat([AMQP_HEADER, Buffer.from([0, 0, 0, 3])]))).toMatch(
      /below 8/,
    );
  });
});

describe("malformed input on the AMQP listener", () => {
  it("closes only the connection that sent it; a device on another connection keeps sending", async () => {
    const log = recordingLogger();
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS, log);
    const device = await connectedDevice(hub, "steady", "amqp");
    const cases = [
      Buffer.from("GET / HTTP/1.1\r\n\r\n"),
      Buffer.concat([AMQP_HEADER, frame(0xfffffff0)]),
      Buffer.concat([SASL_HEADER, frame(MAX_FRAME_BYTES + 1)]),
      Buffer.concat([AMQP_HEADER, Buffer.from([0, 0, 0, 12, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])]),
    ];
    for (const bytes of cases) {
      const socket = await rawTls(hub);
      socket.on("error", () => undefined);
      // Read what the hub answers (its protocol header), or 'close' never comes.
      socket.resume();
      socket.write(bytes);
      await once(socket, "close");
      await device.sendEvent(new Message("between"));
    }
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(
      cases.map(() => "between"),
    );
    expect(hub.connectedClients).toEqual(["steady"]);
    // Refusals of unauthenticated sockets are logged once per 10 s per reason: the first is there.
    expect(log.events.some((e) => e.event === "client-closed" && e.fields.reason === "malformed-frame")).toBe(
      true,
    );
  });
});
