/**
 * What the hub logs when it closes a connection: the fixed reason word, with what an error
 * said beside it as `detail` (a `reason` among the fields used to replace the word, so a
 * refused login was logged as its error text, not as `auth-refused`).
 */
import { describe, expect, it } from "vitest";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { recordingLogger, startHub } from "../helpers/hub.js";
import { deviceConnect, rawClient } from "../helpers/mqtt-raw.js";

describe("a closed connection's log line", () => {
  it("keeps the reason word and carries the error's text as detail", async () => {
    const log = recordingLogger();
    const hub = await startHub(await tempDir(), {}, log);
    await hub.registry.createDevice({ deviceId: "d1" });
    const c = await rawClient(hub.ports.mqtts, hub.caCertificate);
    // A token signed with a key that is not d1's.
    c.send(deviceConnect("d1", Buffer.alloc(32, 7).toString("base64"), { clean: true }));
    const ack = await c.next();
    expect(ack !== "closed" && ack.cmd === "connack" && ack.returnCode).toBe(5);
    await eventually("the close logged", () => log.events.some((e) => e.event === "client-closed"));
    const closed = log.events.find((e) => e.event === "client-closed");
    expect(closed?.fields.reason).toBe("auth-refused");
    expect(closed?.fields.code).toBe("AUTH_BAD_SIGNATURE");
    expect(String(closed?.fields.detail)).not.toBe("");
  });
});
