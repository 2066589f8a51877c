/**
 * The commands on an edge hub: a child's connection string names the root as the IoT hub and
 * the edge as the gateway, and the SDK device sends through the edge with exactly it; the
 * root's `monitor` shows what arrived. Hubs in this process, the command as a child process.
 */
import { join } from "node:path";
import { Client, Message } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { describe, expect, it } from "vitest";
import { runCli, spawnCli } from "../helpers/cli.js";
import { childOf, edgeIdentity, startEdge, startRoot, synced } from "../helpers/edge.js";
import { tempDir } from "../helpers/fixtures.js";

describe("edgehub commands on an edge hub", { timeout: 90_000 }, () => {
  it("prints a child's connection string (HostName the root, GatewayHostName the edge) the SDK sends through", async () => {
    const dir = await tempDir();
    const root = await startRoot(join(dir, "root"));
    const edgeDir = join(dir, "edge");
    const edge = await startEdge(edgeDir, await edgeIdentity(root, "gw"));
    await childOf(root, "gw", "leaf");
    await synced(edge);

    const edgeLogin = ["--data-dir", edgeDir, "--port", String(edge.ports.https)];
    const printed = await runCli(["device", "connection-string", "leaf", ...edgeLogin]);
    expect(printed.code, printed.stderr).toBe(0);
    const cs = printed.stdout.trim();
    expect(cs).toMatch(
      new RegExp(
        `^HostName=localhost;DeviceId=leaf;SharedAccessKey=[^;]+;GatewayHostName=127\\.0\\.0\\.1:${edge.ports.mqtts}$`,
      ),
    );

    const monitor = spawnCli([
      "monitor",
      "--json",
      "--data-dir",
      join(dir, "root"),
      "--port",
      String(root.ports.https),
    ]);
    await monitor.waitFor(/monitoring/);
    const client = Client.fromConnectionString(cs, Mqtt);
    await client.setOptions({ ca: edge.caCertificate });
    await client.open();
    try {
      await client.sendEvent(new Message("through the gateway"));
      await monitor.waitFor(/through the gateway/);
    } finally {
      await client.close();
    }
    monitor.child.kill("SIGINT");
    const seen = JSON.parse((await monitor.exited).stdout.trim()) as Record<string, unknown>;
    expect(seen).toMatchObject({ deviceId: "leaf", body: "through the gateway" });
  });
});
