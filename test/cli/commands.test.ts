/**
 * The `edgehub` commands against a hub running as its own process, with the official device
 * SDK connecting by the connection string the command printed.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Client, Message, type Twin } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { describe, expect, it } from "vitest";
import { runCli, runJson, spawnCli } from "../helpers/cli.js";
import { tempDir } from "../helpers/fixtures.js";
import { type HubProcess, hubProcess } from "../helpers/process.js";

interface RunningHub {
  hub: HubProcess;
  dataDir: string;
  mqttPort: number;
  /** `--data-dir … --port …` for this hub. */
  login: string[];
  ca: string;
}

async function startRootHub(): Promise<RunningHub> {
  const dir = await tempDir();
  const dataDir = join(dir, "data");
  const hub = await hubProcess(dir, {
    hostname: "localhost",
    dataDir,
    listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
  });
  const mqttPort = Number(/MQTT over TLS\s+127\.0\.0\.1:(\d+)/.exec(hub.output())?.[1]);
  const httpsPort = Number(/service API\s+https:\/\/localhost:(\d+)/.exec(hub.output())?.[1]);
  const ca = await readFile(join(dataDir, "certs", "ca.pem"), "utf8");
  return { hub, dataDir, mqttPort, login: ["--data-dir", dataDir, "--port", String(httpsPort)], ca };
}

/** An SDK device connected with exactly `connectionString`, trusting `ca`. */
async function sdkDevice(connectionString: string, ca: string): Promise<Client> {
  const client = Client.fromConnectionString(connectionString, Mqtt);
  await client.setOptions({ ca });
  await client.open();
  return client;
}

describe("edgehub device, monitor, method, c2d, twin (hub and command as processes)", {
  timeout: 90_000,
}, () => {
  it("creates a device, prints a connection string the SDK connects with, and shows, calls and updates it", async () => {
    const h = await startRootHub();
    const created = (await runJson(["device", "create", "dev1", ...h.login])) as Record<string, unknown>;
    expect(created.deviceId).toBe("dev1");
    expect((created.authentication as { type: string }).type).toBe("sas");

    const printed = await runCli(["device", "connection-string", "dev1", ...h.login]);
    expect(printed.code, printed.stderr).toBe(0);
    const cs = printed.stdout.trim();
    // HostName: the IoT hub tokens name (this root); GatewayHostName: where the SDK connects.
    expect(cs).toMatch(
      new RegExp(
        `^HostName=localhost;DeviceId=dev1;SharedAccessKey=[A-Za-z0-9+/=]+;GatewayHostName=localhost:${h.mqttPort}$`,
      ),
    );
    const device = await sdkDevice(cs, h.ca);
    try {
      // Telemetry shows in monitor from when it starts (not what was stored before), only the
      // one device's, as one JSON object per line.
      await device.sendEvent(new Message("stored before monitor started"));
      const monitor = spawnCli(["monitor", "--device", "dev1", "--json", ...h.login]);
      await monitor.waitFor(/monitoring/);
      const other = (await runCli(["device", "create", "other", ...h.login])).code;
      expect(other).toBe(0);
      const otherCs = (await runCli(["device", "connection-string", "other", ...h.login])).stdout.trim();
      const otherDevice = await sdkDevice(otherCs, h.ca);
      await otherDevice.sendEvent(new Message("not mine"));
      await otherDevice.close();
      const message = new Message(JSON.stringify({ temperature: 21.5 }));
      message.properties.add("alert", "no");
      message.messageId = "m-1";
      await device.sendEvent(message);
      await monitor.waitFor(/temperature/);
      monitor.child.kill("SIGINT");
      const ended = await monitor.exited;
      expect(ended.code).toBe(0);
      const lines = ended.stdout.trim().split("\n");
      expect(lines).toHaveLength(1);
      const seen = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
      expect(seen).toMatchObject({
        deviceId: "dev1",
        moduleId: null,
        properties: { alert: "no" },
        systemProperties: { messageId: "m-1" },
        body: '{"temperature":21.5}',
      });

      // A direct method reaches the SDK device, its answer comes back.
      device.onDeviceMethod("reboot", (request, response) => {
        response.send(200, { delayed: request.payload }, () => undefined);
      });
      const called = await runJson([
        "method",
        "invoke",
        "dev1",
        "reboot",
        "--payload",
        '{"in":5}',
        ...h.login,
      ]);
      expect(called).toEqual({ status: 200, payload: { delayed: { in: 5 } } });

      // A C2D message with its properties.
      const received = new Promise<Message>((resolve) => device.on("message", (m: Message) => resolve(m)));
      const sent = await runCli([
        "c2d",
        "send",
        "dev1",
        "open the valve",
        "--props",
        "priority=high,zone=3",
        ...h.login,
      ]);
      expect(sent.code, sent.stderr).toBe(0);
      const c2d = await received;
      expect(c2d.data.toString()).toBe("open the valve");
      expect(c2d.properties.getValue("priority")).toBe("high");
      expect(c2d.properties.getValue("zone")).toBe("3");
      await device.complete(c2d);

      // A desired-properties patch arrives at the device; twin show has it.
      const twin: Twin = await device.getTwin();
      const patched = new Promise<Record<string, unknown>>((resolve) =>
        twin.on("properties.desired", (p: Record<string, unknown>) => {
          if (p.interval !== undefined) resolve(p);
        }),
      );
      const updated = await runCli(["twin", "update", "dev1", "--desired", '{"interval":5}', ...h.login]);
      expect(updated.code, updated.stderr).toBe(0);
      expect((await patched).interval).toBe(5);
      const shown = (await runJson(["twin", "show", "dev1", ...h.login])) as {
        properties: { desired: Record<string, unknown> };
      };
      expect(shown.properties.desired.interval).toBe(5);

      const listed = (await runJson(["device", "list", ...h.login])) as Array<{
        deviceId: string;
        connectionState: string;
      }>;
      expect(listed.map((d) => [d.deviceId, d.connectionState]).sort()).toEqual([
        ["dev1", "Connected"],
        ["other", "Disconnected"],
      ]);
    } finally {
      await device.close();
    }
  });

  it("manages modules, deletes devices, and fails with one line (exit 1) or the usage (exit 2)", async () => {
    const h = await startRootHub();
    expect((await runCli(["device", "create", "dev2", ...h.login])).code).toBe(0);
    const mod = (await runJson(["module", "create", "dev2", "filter", ...h.login])) as Record<
      string,
      unknown
    >;
    expect(mod).toMatchObject({ deviceId: "dev2", moduleId: "filter" });
    const modules = (await runJson(["module", "list", "dev2", ...h.login])) as Array<{ moduleId: string }>;
    expect(modules.map((m) => m.moduleId)).toEqual(["filter"]);
    const text = await runCli(["module", "list", "dev2", ...h.login]);
    expect(text.stdout).toBe("dev2/filter auth=sas Disconnected\n");

    // The module's connection string connects a module client.
    const cs = (
      await runCli(["device", "connection-string", "dev2", "--module", "filter", ...h.login])
    ).stdout.trim();
    expect(cs).toMatch(
      /^HostName=localhost;DeviceId=dev2;ModuleId=filter;SharedAccessKey=[^;]+;GatewayHostName=localhost:\d+$/,
    );
    const { ModuleClient } = await import("azure-iot-device");
    const moduleClient = ModuleClient.fromConnectionString(cs, Mqtt);
    await moduleClient.setOptions({ ca: h.ca });
    await moduleClient.open();
    await moduleClient.close();

    expect((await runCli(["module", "delete", "dev2", "filter", ...h.login])).code).toBe(0);
    expect(await runJson(["module", "list", "dev2", ...h.login])).toEqual([]);
    const gone = await runCli(["module", "show", "dev2", "filter", ...h.login]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toBe("edgehub: module dev2/filter not found [IDENTITY_NOT_FOUND]\n");

    const deleted = await runCli(["device", "delete", "dev2", ...h.login]);
    expect(deleted).toMatchObject({ code: 0, stdout: "dev2: deleted\n" });
    for (const args of [
      ["device", "show", "dev2"],
      ["device", "delete", "dev2"],
      ["device", "connection-string", "dev2"],
      ["twin", "show", "dev2"],
      ["c2d", "send", "dev2", "x"],
      ["method", "invoke", "dev2", "reboot"],
    ]) {
      const r = await runCli([...args, ...h.login]);
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr, args.join(" ")).toMatch(/^edgehub: [^\n]*dev2[^\n]*not found[^\n]*\n$/);
    }
    // An existing device is not replaced by create.
    expect((await runCli(["device", "create", "dev3", ...h.login])).code).toBe(0);
    const again = await runCli(["device", "create", "dev3", ...h.login]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^edgehub: the hub answered 409 DeviceAlreadyExists: [^\n]*\n$/);
    // A method on a device that is not connected.
    const offline = await runCli(["method", "invoke", "dev3", "reboot", ...h.login]);
    expect(offline.code).toBe(1);
    expect(offline.stderr).toContain("not connected");

    const usage: Array<[string[], string]> = [
      [["device", "create"], "device create needs <device-id>"],
      [["device", "frobnicate"], "device needs a command: create, show, list, delete, connection-string"],
      [["device"], "device needs a command"],
      [["device", "show", "dev3", "--bogus"], "--bogus does not apply to device show"],
      [["device", "create", "x", "--x509-thumbprint", "nothex"], "40 or 64 hex digits"],
      [["twin", "update", "dev3", "--desired", "{bad"], "--desired is not JSON"],
      [["twin", "update", "dev3"], "needs --desired or --tags"],
      [["method", "invoke", "dev3", "m", "--timeout", "0"], "--timeout 0"],
      [["c2d", "send", "dev3", "x", "--props", "a b=1"], "not a property name"],
      [["device", "list", "--port", "http"], "--port http is not a port number"],
      [["frobnicate"], "no command frobnicate"],
    ];
    for (const [args, message] of usage) {
      const r = await runCli(args);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr.split("\n")[0], args.join(" ")).toContain(message);
      expect(r.stderr, args.join(" ")).toContain("usage: edgehub");
    }
    const help = await runCli(["help", "device", "create"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("usage: edgehub device create <device-id> [--edge] [--parent <edge>]");
    expect(help.stdout).toContain("--x509-thumbprint");
    expect((await runCli(["device", "create", "--help"])).stdout).toBe(help.stdout);
    const group = await runCli(["help", "twin"]);
    expect(group.stdout).toContain("usage: edgehub twin update <device-id>");
  });

  it("creates an edge device and a child with --parent; the child's string names the root hub", async () => {
    const h = await startRootHub();
    const edge = (await runJson(["device", "create", "gw", "--edge", ...h.login])) as { deviceScope: string };
    expect(edge.deviceScope).toMatch(/^ms-azure-iot-edge:\/\/gw-\d+$/);
    const child = (await runJson(["device", "create", "leaf", "--parent", "gw", ...h.login])) as {
      parentScopes: string[];
    };
    expect(child.parentScopes).toEqual([edge.deviceScope]);
    expect((await runCli(["identity", "list-children", "--device-id", "gw", ...h.login])).stdout).toBe(
      "leaf\n",
    );
    const notEdge = await runCli(["device", "create", "leaf2", "--parent", "leaf", ...h.login]);
    expect(notEdge.code).toBe(1);
    expect(notEdge.stderr).toContain("parent device leaf is not an edge device");
    expect((await runCli(["device", "show", "leaf2", ...h.login])).code).toBe(1);
  });
});
