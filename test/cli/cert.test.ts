/**
 * `edgehub cert`: the transparent-gateway chain, used as it comes out by a hub process
 * (`tls`, `trustedDeviceCaFiles`) and by SDK devices authenticating with X.509.
 */
import { X509Certificate } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import tls from "node:tls";
import { Client, Message } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { describe, expect, it } from "vitest";
import { runCli, runJson } from "../helpers/cli.js";
import { tempDir } from "../helpers/fixtures.js";
import { hubProcess } from "../helpers/process.js";

async function x509Device(
  connectionString: string,
  dir: string,
  deviceId: string,
  ca: string,
): Promise<Client> {
  const client = Client.fromConnectionString(connectionString, Mqtt);
  await client.setOptions({
    cert: await readFile(join(dir, "devices", `${deviceId}.pem`), "utf8"),
    key: await readFile(join(dir, "devices", `${deviceId}-key.pem`), "utf8"),
    ca,
  });
  await client.open();
  return client;
}

describe("edgehub cert (transparent gateway chain)", { timeout: 90_000 }, () => {
  it("makes a root CA, edge CA, server and device certificates a hub and SDK devices use as they are", async () => {
    const dir = await tempDir();
    const certs = join(dir, "certs");
    const out = ["--out-dir", certs];
    const root = (await runJson(["cert", "create-ca", ...out])) as { certificate: string; key: string };
    expect(root).toEqual({ certificate: join(certs, "root-ca.pem"), key: join(certs, "root-ca-key.pem") });
    expect((await runCli(["cert", "create-edge-ca", ...out])).code).toBe(0);
    const server = await runCli(["cert", "create-server", "localhost", "--san", "127.0.0.1", ...out]);
    expect(server.code, server.stderr).toBe(0);
    const xdev = (await runJson(["cert", "create-device", "xdev", ...out])) as { thumbprint: string };
    const self = (await runJson(["cert", "create-device", "sdev", "--self-signed", ...out])) as {
      thumbprint: string;
    };
    expect(self.thumbprint).toMatch(/^[0-9A-F]{40}$/);

    // Keys 0600, certificates readable; nothing is overwritten without --force.
    for (const key of ["root-ca-key.pem", "edge-ca-key.pem", "server-key.pem", "devices/xdev-key.pem"])
      expect((await stat(join(certs, key))).mode & 0o777, key).toBe(0o600);
    expect((await stat(join(certs, "root-ca.pem"))).mode & 0o777).toBe(0o644);
    const rootBefore = await readFile(join(certs, "root-ca.pem"), "utf8");
    const again = await runCli(["cert", "create-ca", ...out]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("exists; pass --force");
    expect(await readFile(join(certs, "root-ca.pem"), "utf8")).toBe(rootBefore);

    // The chain: root → edge CA → server (localhost, 127.0.0.1); root → device, CN = id.
    const rootCa = new X509Certificate(rootBefore);
    const edgeCa = new X509Certificate(await readFile(join(certs, "edge-ca.pem"), "utf8"));
    const serverChain = await readFile(join(certs, "server.pem"), "utf8");
    const serverCert = new X509Certificate(serverChain);
    expect(edgeCa.verify(rootCa.publicKey) && edgeCa.ca).toBe(true);
    expect(serverCert.verify(edgeCa.publicKey)).toBe(true);
    expect(serverCert.subjectAltName).toBe("DNS:localhost, IP Address:127.0.0.1");
    expect(serverChain.match(/BEGIN CERTIFICATE/g)).toHaveLength(2);
    const device = new X509Certificate(await readFile(join(certs, "devices", "xdev.pem"), "utf8"));
    expect(device.subject).toBe("CN=xdev");
    expect(device.verify(rootCa.publicKey)).toBe(true);
    expect(xdev.thumbprint).toBe(device.fingerprint.replace(/:/g, ""));

    // A hub on the files as they are.
    const dataDir = join(dir, "data");
    const hub = await hubProcess(dir, {
      hostname: "localhost",
      dataDir,
      listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
      tls: {
        certFile: join(certs, "server.pem"),
        keyFile: join(certs, "server-key.pem"),
        caFile: join(certs, "root-ca.pem"),
      },
      trustedDeviceCaFiles: [join(certs, "root-ca.pem")],
    });
    const mqttPort = Number(/MQTT over TLS\s+127\.0\.0\.1:(\d+)/.exec(hub.output())?.[1]);
    const httpsPort = Number(/service API\s+https:\/\/localhost:(\d+)/.exec(hub.output())?.[1]);
    // A client trusting only the root verifies the hub (the edge CA comes in the handshake).
    const socket = tls.connect({
      host: "127.0.0.1",
      servername: "localhost",
      port: mqttPort,
      ca: rootBefore,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once("secureConnect", resolve);
      socket.once("error", reject);
    });
    expect(socket.authorized).toBe(true);
    socket.destroy();

    const login = ["--data-dir", dataDir, "--port", String(httpsPort), "--ca", join(certs, "root-ca.pem")];
    expect((await runCli(["device", "create", "xdev", "--x509-ca", ...login])).code).toBe(0);
    const sdev = await runCli(["device", "create", "sdev", "--x509-thumbprint", self.thumbprint, ...login]);
    expect(sdev.code, sdev.stderr).toBe(0);
    expect(sdev.stdout).toBe("sdev auth=selfSigned enabled Disconnected\n");

    for (const id of ["xdev", "sdev"]) {
      const cs = (await runCli(["device", "connection-string", id, ...login])).stdout.trim();
      // The SDK's X.509 path connects to HostName: the gateway, with its port.
      expect(cs).toBe(`HostName=localhost:${mqttPort};DeviceId=${id};x509=true`);
      const client = await x509Device(cs, certs, id, rootBefore);
      await client.sendEvent(new Message(`hello from ${id}`));
      await client.close();
    }
    // A certificate for another id, from the same CA, is refused for xdev.
    await runCli(["cert", "create-device", "intruder", ...out]);
    const { copyFile } = await import("node:fs/promises");
    await copyFile(join(certs, "devices", "intruder.pem"), join(certs, "devices", "xdev.pem"));
    await copyFile(join(certs, "devices", "intruder-key.pem"), join(certs, "devices", "xdev-key.pem"));
    const cs = `HostName=localhost:${mqttPort};DeviceId=xdev;x509=true`;
    const refused = await x509Device(cs, certs, "xdev", rootBefore).then(
      async (c) => {
        await c.close();
        return "connected";
      },
      (err: Error) => err.constructor.name,
    );
    expect(refused).toBe("UnauthorizedError");

    // A device id that would leave the directory is refused.
    const bad = await runCli(["cert", "create-device", "../escape", ...out]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("is not a device id");
  });
});
