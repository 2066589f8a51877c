import { describe, expect, it } from "vitest";
import { DirectMethods, silentLogger } from "../../ts/index.js";
import { Link } from "../../ts/upstream/link.js";
import { MethodRelay } from "../../ts/upstream/method-relay.js";
import { eventually } from "../helpers/fixtures.js";
import { RawParent } from "../helpers/raw-parent.js";

describe("method relay", () => {
  it("answers a method name that is not valid url-encoding with 400 upstream, and keeps relaying", async () => {
    const parent = await RawParent.start();
    const link = new Link(
      "leaf",
      () => ({ host: "localhost", port: parent.port, clientId: "leaf", ca: Buffer.from(parent.ca) }),
      { maxBackoffMs: 300, keepaliveSecs: 30, ackTimeoutMs: 5000 },
      silentLogger,
      ["$iothub/methods/POST/#"],
    );
    const relay = new MethodRelay(
      { linkFor: () => link, release: () => link.close() },
      new DirectMethods(() => undefined),
      silentLogger,
    );
    const up = new Promise<void>((resolve) => link.once("up", resolve));
    relay.listen("leaf");
    await up;
    const call = (name: string, rid: string) =>
      parent.send({
        cmd: "publish",
        topic: `$iothub/methods/POST/${name}/?$rid=${rid}`,
        payload: Buffer.from("{}"),
        qos: 0,
        retain: false,
        dup: false,
      });

    call("reboot%", "1");
    await eventually("the answer to the bad name", () => parent.publishes.length >= 1);
    expect(parent.publishes[0]?.topic).toBe("$iothub/methods/res/400/?$rid=1");
    expect(JSON.parse(parent.publishes[0]?.payload.toString() ?? "")).toMatchObject({ errorCode: 400004 });

    // The link is still up and the next call is relayed (nobody listens here: 404).
    call("re%62oot", "2");
    await eventually("the answer to the next call", () => parent.publishes.length >= 2);
    expect(parent.publishes[1]?.topic).toBe("$iothub/methods/res/404/?$rid=2");
    expect(link.up).toBe(true);
    relay.close();
  });
});
