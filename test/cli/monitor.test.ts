/**
 * `edgehub monitor` on an edge hub run as its own process (`edgehub start --json`), with a
 * root in this process and an official-SDK child sending through the edge: monitor shows
 * what the edge holds for its parent without taking it from the forwarder (the root still
 * gets every message, once), follows again when the edge restarts, shows what the edge
 * stores during an outage, and after losing the stream resumes from where it left off
 * (nothing printed twice, nothing stored meanwhile missed).
 */
import { join } from "node:path";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import { type StartedHub, spawnCli, startJson } from "../helpers/cli.js";
import { childClient, childOf, edgeIdentity, rootEvents, startRoot } from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { fixedListen } from "../helpers/process.js";
import { BlackholeProxy } from "../helpers/proxy.js";

describe("edgehub monitor on an edge hub", () => {
  it("shows the upstream queues read-only, and survives the hub's restart without printing twice", async () => {
    const dir = await tempDir();
    const rootPorts = await fixedListen();
    const rootDir = join(dir, "root");
    let root: EdgeHub = await startRoot(rootDir, { listen: rootPorts, metrics: false });
    const parent = await edgeIdentity(root, "gw");
    const key = await childOf(root, "gw", "leaf");
    const edgeConfig = {
      hostname: "127.0.0.1",
      dataDir: join(dir, "edge"),
      listen: await fixedListen(),
      parent,
      metrics: false,
      logLevel: "warn",
    };
    let edge: StartedHub = await startJson(dir, edgeConfig);
    const gateway = { port: edgeConfig.listen.mqtts, ca: edge.caPem };
    /** The child through the edge; opened again after a restart (the edge may still be syncing its scope). */
    const connectLeaf = async () => {
      const leaf = await childClient(gateway, "leaf", key);
      await eventually("leaf connected through the edge", async () =>
        leaf.open().then(
          () => true,
          () => false,
        ),
      );
      return leaf;
    };
    let leaf = await connectLeaf();

    // Monitor reaches the edge through a relay the test can cut (the hub stays up then).
    const relay = await BlackholeProxy.start(edgeConfig.listen.https);
    const monitor = spawnCli([
      "monitor",
      "--json",
      "--data-dir",
      edgeConfig.dataDir,
      "--port",
      String(relay.port),
    ]);
    await monitor.waitFor(/monitoring device-to-cloud/);
    const bodies = () =>
      monitor
        .stdout()
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { body: string }).body);
    const seen = (n: number) => eventually(`${n} messages in monitor`, () => bodies().length >= n);
    const resumed = async (times: number) =>
      eventually("monitor following again", () => monitor.stderr().split("monitoring again").length > times);

    // Link up: shown as stored, and forwarded all the same.
    await leaf.sendEvent(new Message("m1"));
    await seen(1);
    await eventually("m1 at the root", async () => (await rootEvents(root)).length === 1);

    // The edge restarts: monitor says it lost the hub, and follows again once it is back.
    await leaf.close();
    edge.run.child.kill("SIGTERM");
    expect((await edge.run.exited).code).toBe(0);
    await monitor.waitFor(/following again in/);
    edge = await startJson(dir, edgeConfig);
    await resumed(1);
    leaf = await connectLeaf();
    await leaf.sendEvent(new Message("m2"));
    await seen(2);

    // The root goes away: what the edge stores meanwhile shows, and stays for the forwarder.
    await stopHub(root);
    await leaf.sendEvent(new Message("m3"));
    await seen(3);
    // Monitor loses the edge while m4 is stored: it follows again from after m3, so m4 shows
    // (not skipped as a start from the end would) and m3 does not show again.
    relay.cut();
    await eventually(
      "monitor lost the stream",
      () => monitor.stderr().split("following again in").length > 2,
    );
    await leaf.sendEvent(new Message("m4"));
    relay.restore();
    await resumed(2);
    await seen(4);
    root = await startRoot(rootDir, { listen: rootPorts, metrics: false });
    await eventually("m1-m4 at the root", async () => (await rootEvents(root)).length >= 4);
    await leaf.close();

    monitor.child.kill("SIGINT");
    const ended = await monitor.exited;
    expect(ended.code).toBe(0);
    expect(bodies()).toEqual(["m1", "m2", "m3", "m4"]);
    const lines = ended.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const l of lines) expect(l).toMatchObject({ deviceId: "leaf", moduleId: null });
    // The root got each exactly once: monitor read, the forwarder alone acknowledged.
    const atRoot = (await rootEvents(root)).map((m) => m.body.toString());
    expect(atRoot).toEqual(["m1", "m2", "m3", "m4"]);
    edge.run.child.kill("SIGTERM");
    expect((await edge.run.exited).code).toBe(0);
  }, 120_000);
});
