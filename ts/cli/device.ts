/**
 * `edgehub device create | show | list | delete | connection-string`: device identities of a
 * running hub, as `az iot hub device-identity` manages them on IoT Hub, through the service
 * API (`PUT/GET/DELETE /devices/{id}`).
 */
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { type CommandGroup, type CommandSpec, jsonLine, printable, UsageError } from "./command.js";
import { edgeParent, scopeOwner } from "./identity.js";
import { withClient } from "./login.js";
import type { DeviceJson, HubEndpoints } from "./service-client.js";

const ID = { name: "device-id", help: "the device's id" } as const;
const MODULE = { name: "module", value: "<module-id>", help: "a module of the device" } as const;
/** IoT Hub's thumbprints: SHA-1 (40 hex digits) or SHA-256 (64), colons allowed as `openssl` prints them. */
const THUMBPRINT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/i;

/** The authentication of a device as one word for people. */
function authOf(d: Record<string, unknown>): string {
  const type = (d.authentication as { type?: unknown } | undefined)?.type;
  return typeof type === "string" ? type : "unknown";
}

function deviceLine(d: DeviceJson): string {
  const parent = d.parentScopes[0] ? ` parent=${scopeOwner(d.parentScopes[0])}` : "";
  const line = `${d.deviceId}${d.capabilities.iotEdge ? " edge" : ""} auth=${authOf(d)} ${String(d.status)} ${String(d.connectionState)}${parent}`;
  return `${printable(line)}\n`;
}

const create: CommandSpec = {
  name: "device create",
  summary: "create a device with SAS keys the hub generates, or an X.509 one",
  args: [ID],
  options: [
    { name: "edge", help: "an edge device (a hub of its own, with a device scope)" },
    { name: "parent", value: "<edge>", help: "the edge device it connects through (its parent)" },
    {
      name: "x509-thumbprint",
      value: "<sha1|sha256>",
      help: "authenticates with the self-signed certificate of this thumbprint",
    },
    {
      name: "x509-ca",
      help: "authenticates with a certificate signed by a CA the hub trusts (trustedDeviceCaFiles), CN = device id",
    },
  ],
  login: true,
  async run(input, io) {
    const deviceId = input.args["device-id"] ?? "";
    const thumbprint = input.opt("x509-thumbprint")?.replace(/:/g, "");
    if (thumbprint !== undefined && !THUMBPRINT.test(thumbprint))
      throw new UsageError("--x509-thumbprint must be 40 or 64 hex digits", this);
    if (thumbprint !== undefined && input.flag("x509-ca"))
      throw new UsageError("--x509-thumbprint and --x509-ca exclude each other", this);
    const edge = input.flag("edge");
    const parentId = input.opt("parent");
    const device = await withClient(input, async (client) => {
      const scope = parentId === undefined ? undefined : (await edgeParent(client, parentId)).deviceScope;
      return client.createDevice({
        deviceId,
        capabilities: { iotEdge: edge },
        ...(thumbprint !== undefined
          ? {
              authentication: {
                type: "selfSigned",
                x509Thumbprint: { primaryThumbprint: thumbprint.toUpperCase(), secondaryThumbprint: null },
              },
            }
          : input.flag("x509-ca")
            ? { authentication: { type: "certificateAuthority" } }
            : {}),
        // As the registry takes it: an edge child names its parent's scope, a leaf child its scope.
        ...(scope === undefined ? {} : edge ? { parentScopes: [scope] } : { deviceScope: scope }),
      });
    });
    io.out(input.json ? jsonLine(device) : deviceLine(device));
  },
};

const show: CommandSpec = {
  name: "device show",
  summary: "print a device (--json: as the service API returns it, keys included)",
  args: [ID],
  login: true,
  async run(input, io) {
    const id = input.args["device-id"] ?? "";
    const device = await withClient(input, (c) => c.getDevice(id));
    if (!device) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${id} not found`);
    io.out(input.json ? jsonLine(device) : deviceLine(device));
  },
};

const list: CommandSpec = {
  name: "device list",
  summary: "print every device, one line each: id, edge, auth, status, connection state, parent",
  login: true,
  async run(input, io) {
    const devices = await withClient(input, (c) => c.listDevices());
    io.out(input.json ? jsonLine(devices) : devices.map(deviceLine).join(""));
  },
};

const remove: CommandSpec = {
  name: "device delete",
  summary: "delete a device and its modules; nothing stored for it reaches a later device of that id",
  args: [ID],
  login: true,
  async run(input, io) {
    const id = input.args["device-id"] ?? "";
    await withClient(input, (c) => c.deleteDevice(id));
    io.out(input.json ? jsonLine({ deviceId: id, deleted: true }) : `${printable(id)}: deleted\n`);
  },
};

/**
 * A device or module connection string for a device connecting through this hub. `HostName`
 * is the IoT hub its SAS tokens name (the token's `sr`), `GatewayHostName` where the SDK
 * opens its connection: azure-iot-device's `SharedAccessKeyAuthenticationProvider` keeps
 * `GatewayHostName` apart (Azure/azure-iot-sdk-node:device/core/src/sak_authentication_provider.ts#fromConnectionString)
 * and the MQTT transport connects to it instead of `HostName`
 * (Azure/azure-iot-sdk-node:device/transport/mqtt/src/mqtt.ts#_getConnectionConfig). It
 * takes `host:port` there, so a hub on another port than 8883 is named with its port. An
 * X.509 identity has no token: the SDK's `X509AuthenticationProvider` takes `HostName` alone
 * and connects there (Azure/azure-iot-sdk-node:device/core/src/device_client.ts#fromConnectionString),
 * so its string names the gateway as `HostName`.
 */
export function connectionString(
  endpoints: HubEndpoints,
  deviceId: string,
  moduleId: string | undefined,
  key: string | undefined,
): string {
  const gateway = endpoints.mqtts === 8883 ? endpoints.hostname : `${endpoints.hostname}:${endpoints.mqtts}`;
  const ids = [`DeviceId=${deviceId}`, ...(moduleId === undefined ? [] : [`ModuleId=${moduleId}`])];
  if (key === undefined) return [`HostName=${gateway}`, ...ids, "x509=true"].join(";");
  return [
    `HostName=${endpoints.hubHostname}`,
    ...ids,
    `SharedAccessKey=${key}`,
    `GatewayHostName=${gateway}`,
  ].join(";");
}

const connectionStringCommand: CommandSpec = {
  name: "device connection-string",
  summary: "print the connection string a device (or one of its modules) connects through this hub with",
  args: [ID],
  options: [MODULE],
  login: true,
  notes:
    "Prints HostName=<IoT hub>;DeviceId=…[;ModuleId=…];SharedAccessKey=…;GatewayHostName=<this hub>[:port]\n" +
    "For a device that authenticates with a certificate: HostName=<this hub>[:port];DeviceId=…;x509=true.\n" +
    "Devices trust the hub's CA: <dataDir>/certs/ca.pem, or tls.caFile.",
  async run(input, io) {
    const deviceId = input.args["device-id"] ?? "";
    const moduleId = input.opt("module");
    const { identity, endpoints } = await withClient(input, async (c) => {
      const identity =
        moduleId === undefined ? await c.getDevice(deviceId) : await c.getModule(deviceId, moduleId);
      return { identity, endpoints: await c.endpoints() };
    });
    if (!identity)
      throw new EdgeHubError(
        ErrorCodes.IDENTITY_NOT_FOUND,
        moduleId === undefined ? `device ${deviceId} not found` : `module ${deviceId}/${moduleId} not found`,
      );
    const auth = identity.authentication as
      | { type?: string; symmetricKey?: { primaryKey?: unknown } }
      | undefined;
    const key = auth?.type === "sas" ? auth.symmetricKey?.primaryKey : undefined;
    if (auth?.type === "sas" && typeof key !== "string")
      throw new Error("the hub answered without the identity's key");
    const cs = connectionString(endpoints, deviceId, moduleId, typeof key === "string" ? key : undefined);
    io.out(input.json ? jsonLine({ connectionString: cs }) : `${printable(cs)}\n`);
  },
};

/** `edgehub device …`. */
export const deviceCommands: CommandGroup = {
  name: "device",
  summary: "device identities of the running hub (as az iot hub device-identity)",
  commands: [create, show, list, remove, connectionStringCommand],
};
