import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Client, Message } from "azure-iot-device";
import { Amqp } from "azure-iot-device-amqp";
import { Mqtt } from "azure-iot-device-mqtt";
import { describe, expect, it } from "vitest";
import { type EdgeHub, EVENTS_QUEUE } from "../../ts/index.js";
import { certificateAuthority, type Issuer, leaf, type Pem, selfSigned } from "../helpers/certs.js";
import { tempDir } from "../helpers/fixtures.js";
import { BOTH_HEADS, startHub, type Transport } from "../helpers/hub.js";
import { deviceConnect, rawClient } from "../helpers/mqtt-raw.js";

const DAY = 86_400_000;

async function x509Client(hub: EdgeHub, deviceId: string, cert: Pem, transport: Transport): Promise<Client> {
  const client = Client.fromConnectionString(
    // The SDK's X.509 path ignores GatewayHostName: the port goes on HostName.
    `HostName=localhost:${transport === "mqtt" ? hub.ports.mqtts : hub.ports.amqps};DeviceId=${deviceId};x509=true`,
    transport === "mqtt" ? Mqtt : Amqp,
  );
  await client.setOptions({ cert: cert.cert, key: cert.key, ca: hub.caCertificate });
  client.on("error", () => undefined);
  return client;
}

/**
 * How the SDK refuses: MQTT at open (CONNACK); AMQP at the first link (the address names
 * the identity the certificate must be), so a message is sent too.
 */
async function refusal(client: Client): Promise<string | undefined> {
  return client
    .open()
    .then(() => client.sendEvent(new Message("refused?")))
    .then(
      async () => {
        await client.close();
        return undefined;
      },
      async (e: Error) => {
        await client.close().catch(() => undefined);
        return e.name;
      },
    );
}

/** A hub whose trusted device CA is a fresh "plant CA". */
async function hubTrustingPlantCa(): Promise<{ hub: EdgeHub; ca: Issuer }> {
  const dir = await tempDir();
  const ca = await certificateAuthority("plant CA");
  const caFile = join(dir, "plant-ca.pem");
  await writeFile(caFile, ca.cert);
  return { hub: await startHub(join(dir, "hub"), { ...BOTH_HEADS, trustedDeviceCaFiles: [caFile] }), ca };
}

describe.each<Transport>(["mqtt", "amqp"])("X.509 devices over %s", (transport) => {
  it("authenticate by registered thumbprint (self-signed); another certificate is refused", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const mine = await selfSigned("x1");
    await hub.registry.createDevice({
      deviceId: "x1",
      authentication: {
        type: "selfSigned",
        x509Thumbprint: { primaryThumbprint: mine.thumbprint, secondaryThumbprint: null },
      },
    });
    const client = await x509Client(hub, "x1", mine, transport);
    await client.open();
    await client.sendEvent(new Message("signed"));
    await client.close();
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.properties["$.cdid"])).toEqual(["x1"]);
    expect(await refusal(await x509Client(hub, "x1", await selfSigned("x1"), transport))).toBe(
      "UnauthorizedError",
    );
  });

  it("authenticate by a chain to a trusted CA with CN = device id", async () => {
    const { hub, ca } = await hubTrustingPlantCa();
    await hub.registry.createDevice({ deviceId: "x2", authentication: { type: "certificateAuthority" } });
    const client = await x509Client(hub, "x2", await leaf(ca, "x2"), transport);
    await client.open();
    await client.sendEvent(new Message("ca-signed"));
    await client.close();
    expect(await refusal(await x509Client(hub, "x2", await leaf(ca, "someone-else"), transport))).toBe(
      "UnauthorizedError",
    );
    const rogue = await certificateAuthority("rogue CA");
    expect(await refusal(await x509Client(hub, "x2", await leaf(rogue, "x2"), transport))).toBe(
      "UnauthorizedError",
    );
    expect((await hub.store.read(EVENTS_QUEUE)).map((m) => m.body.toString())).toEqual(["ca-signed"]);
  });

  it("refuse a registered thumbprint certificate outside its validity", async () => {
    const hub = await startHub(join(await tempDir(), "hub"), BOTH_HEADS);
    const expired = await selfSigned("old", {
      notBefore: new Date(Date.now() - 10 * DAY),
      notAfter: new Date(Date.now() - DAY),
    });
    const early = await selfSigned("early", {
      notBefore: new Date(Date.now() + DAY),
      notAfter: new Date(Date.now() + 2 * DAY),
    });
    for (const [deviceId, cert] of [
      ["old", expired],
      ["early", early],
    ] as const) {
      await hub.registry.createDevice({
        deviceId,
        authentication: {
          type: "selfSigned",
          x509Thumbprint: { primaryThumbprint: cert.thumbprint, secondaryThumbprint: null },
        },
      });
      expect(await refusal(await x509Client(hub, deviceId, cert, transport))).toBe("UnauthorizedError");
    }
    expect(await hub.store.read(EVENTS_QUEUE)).toEqual([]);
  });
});

describe("X.509 modules signed by a trusted CA", () => {
  /** The CONNACK code for module `clientId` logging in over real TLS with `cert` and no password. */
  async function moduleLogin(hub: EdgeHub, clientId: string, cert: Pem): Promise<number | "closed"> {
    const c = await rawClient(hub.ports.mqtts, hub.caCertificate, { cert: cert.cert, key: cert.key });
    c.send(deviceConnect(clientId, undefined, { clean: true }));
    const ack = await c.next();
    c.end();
    return ack === "closed" ? ack : ack.cmd === "connack" ? (ack.returnCode ?? -1) : -1;
  }

  it("authenticate with CN = {device}/{module}, as IoT Hub; the device's own certificate is not the module's", async () => {
    const { hub, ca } = await hubTrustingPlantCa();
    await hub.registry.createDevice({ deviceId: "x3", authentication: { type: "certificateAuthority" } });
    await hub.registry.createModule({
      deviceId: "x3",
      moduleId: "mod",
      authentication: { type: "certificateAuthority" },
    });
    expect(await moduleLogin(hub, "x3/mod", await leaf(ca, "x3/mod"))).toBe(0);
    expect(await moduleLogin(hub, "x3/mod", await leaf(ca, "x3"))).toBe(5);
    expect(await moduleLogin(hub, "x3/other", await leaf(ca, "x3/other"))).toBe(5);
  });
});
