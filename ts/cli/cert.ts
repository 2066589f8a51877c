/**
 * `edgehub cert create-ca | create-edge-ca | create-server | create-device`: the certificates
 * of a transparent gateway, as IoT Edge's "create test certificates" scripts make them
 * (Azure/iotedge:tools/CACertificates/certGen.sh): a root CA; an edge CA signed by it; the
 * hub's server certificate signed by the edge CA, for the names devices connect to; device
 * certificates with CN = device id. All in one directory, keys written 0600, named so that
 * the hub's config uses them as they are:
 *
 *   "tls": {"certFile": "<dir>/server.pem", "keyFile": "<dir>/server-key.pem", "caFile": "<dir>/root-ca.pem"},
 *   "trustedDeviceCaFiles": ["<dir>/root-ca.pem"]
 *
 * `server.pem` holds the server certificate and the edge CA (the chain the hub sends);
 * devices trust `root-ca.pem`.
 */
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { isIdentityId } from "../auth/registry.js";
import { mkdirDurable, writeDurable } from "../durable-file.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import {
  type CommandGroup,
  type CommandIo,
  type CommandSpec,
  jsonLine,
  type OptionSpec,
  type Parsed,
  UsageError,
} from "./command.js";

const OUT_DIR: OptionSpec = {
  name: "out-dir",
  value: "<dir>",
  help: "where the files are read and written (default ./certs)",
};
const FORCE: OptionSpec = {
  name: "force",
  help: "overwrite files that exist (by default nothing is overwritten)",
};
const days = (dflt: number): OptionSpec => ({
  name: "days",
  value: "<n>",
  help: `days of validity (default ${dflt})`,
});
const COMMON_NAME = (dflt: string): OptionSpec => ({
  name: "name",
  value: "<common name>",
  help: `the certificate's CN (default "${dflt}")`,
});

/** The files of the chain, by role. */
function files(dir: string) {
  return {
    rootCa: join(dir, "root-ca.pem"),
    rootKey: join(dir, "root-ca-key.pem"),
    edgeCa: join(dir, "edge-ca.pem"),
    edgeKey: join(dir, "edge-ca-key.pem"),
    server: join(dir, "server.pem"),
    serverKey: join(dir, "server-key.pem"),
    device: (id: string) => join(dir, "devices", `${id}.pem`),
    deviceKey: (id: string) => join(dir, "devices", `${id}-key.pem`),
  };
}

function daysOf(input: Parsed, dflt: number, spec: CommandSpec): number {
  const text = input.opt("days") ?? String(dflt);
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < 1 || n > 36_500)
    throw new UsageError(`--days ${text} is not a number of days 1-36500`, spec);
  return n;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Writes a certificate (0644) and its key (0600), refusing to replace either unless `force`. */
async function writePair(
  certFile: string,
  cert: string,
  keyFile: string,
  key: string,
  force: boolean,
): Promise<void> {
  if (!force)
    for (const f of [certFile, keyFile])
      if (await exists(f))
        throw new EdgeHubError(
          ErrorCodes.INVALID_ARGUMENT,
          `${f} exists; pass --force to replace it (and everything it signed)`,
        );
  await writeDurable(keyFile, key, 0o600);
  await writeDurable(certFile, cert, 0o644);
}

/** Reads an issuer written by an earlier `cert` command, saying which command makes it when absent. */
async function readIssuer(certFile: string, keyFile: string, madeBy: string) {
  const { loadIssuer } = await import("../certs/issue.js");
  let certText: string;
  let keyText: string;
  try {
    // One after the other: the error names the certificate when both are missing, every time.
    certText = await readFile(certFile, "utf8");
    keyText = await readFile(keyFile, "utf8");
  } catch (err) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      `cannot read ${(err as { path?: string }).path ?? certFile}: run edgehub cert ${madeBy} first (same --out-dir)`,
      { cause: err },
    );
  }
  return { issuer: await loadIssuer(certText, keyText), certText };
}

function report(
  input: Parsed,
  io: CommandIo,
  written: Record<string, string>,
  extra: Record<string, string> = {},
): void {
  if (input.json) {
    io.out(jsonLine({ ...written, ...extra }));
    return;
  }
  for (const [role, file] of Object.entries(written)) io.out(`${role.padEnd(12)} ${file}\n`);
  for (const [k, v] of Object.entries(extra)) io.out(`${k.padEnd(12)} ${v}\n`);
}

/**
 * Issues a CA (the root when `parent` is absent, else signed by the parent's files) and
 * writes it with its key as `certFile`, `keyFile`.
 */
async function makeCa(
  input: Parsed,
  io: CommandIo,
  spec: CommandSpec,
  ca: { name: string; pathLength: number; days: number; certFile: string; keyFile: string },
  parent?: { certFile: string; keyFile: string; madeBy: string },
): Promise<void> {
  const { issue, certPem, keyPem } = await import("../certs/issue.js");
  const issuer = parent && (await readIssuer(parent.certFile, parent.keyFile, parent.madeBy)).issuer;
  const made = await issue(
    input.opt("name") ?? ca.name,
    { kind: "ca", pathLength: ca.pathLength },
    daysOf(input, ca.days, spec),
    issuer,
  );
  await writePair(ca.certFile, certPem(made.cert), ca.keyFile, keyPem(made.privateKey), input.flag("force"));
  report(input, io, { certificate: ca.certFile, key: ca.keyFile });
}

const createCa: CommandSpec = {
  name: "cert create-ca",
  summary: "create the root CA of the chain: root-ca.pem and root-ca-key.pem (devices and the hub trust it)",
  options: [OUT_DIR, COMMON_NAME("edgehub root CA"), days(3650), FORCE],
  async run(input, io) {
    const dir = input.opt("out-dir") ?? "certs";
    await mkdirDurable(dir, 0o755);
    const f = files(dir);
    // Path length 1: the edge CA below it, and no CA below that.
    const ca = { name: "edgehub root CA", pathLength: 1, days: 3650, certFile: f.rootCa, keyFile: f.rootKey };
    await makeCa(input, io, this, ca);
  },
};

const createEdgeCa: CommandSpec = {
  name: "cert create-edge-ca",
  summary:
    "create the edge CA, signed by the root CA: edge-ca.pem and edge-ca-key.pem (signs the hub's server certificate)",
  options: [OUT_DIR, COMMON_NAME("edgehub edge CA"), days(365), FORCE],
  async run(input, io) {
    const f = files(input.opt("out-dir") ?? "certs");
    const ca = { name: "edgehub edge CA", pathLength: 0, days: 365, certFile: f.edgeCa, keyFile: f.edgeKey };
    await makeCa(input, io, this, ca, { certFile: f.rootCa, keyFile: f.rootKey, madeBy: "create-ca" });
  },
};

const createServer: CommandSpec = {
  name: "cert create-server",
  summary:
    "create the hub's server certificate, signed by the edge CA: server.pem (with the edge CA) and server-key.pem",
  args: [
    { name: "hostname", help: "the hub's hostname (config hostname): what devices' GatewayHostName names" },
  ],
  options: [
    { name: "san", value: "<name,…>", help: "more DNS names or IP addresses devices reach the hub by" },
    OUT_DIR,
    days(365),
    FORCE,
  ],
  notes:
    'Config: "tls": {"certFile": "<dir>/server.pem", "keyFile": "<dir>/server-key.pem", "caFile": "<dir>/root-ca.pem"}',
  async run(input, io) {
    const { issue, certPem, keyPem } = await import("../certs/issue.js");
    const hostname = input.args.hostname ?? "";
    const names = [hostname, ...(input.opt("san") ?? "").split(",")].map((n) => n.trim()).filter(Boolean);
    for (const n of names)
      if (!/^[A-Za-z0-9.:*-]{1,253}$/.test(n))
        throw new UsageError(`${JSON.stringify(n)} is not a hostname or IP address`, this);
    const f = files(input.opt("out-dir") ?? "certs");
    const { issuer, certText } = await readIssuer(f.edgeCa, f.edgeKey, "create-edge-ca");
    const server = await issue(
      hostname,
      { kind: "server", names: [...new Set(names)] },
      daysOf(input, 365, this),
      issuer,
    );
    // The chain the hub sends: its certificate, then the edge CA (devices hold the root).
    const chain = `${certPem(server.cert)}${certText.trim()}\n`;
    await writePair(f.server, chain, f.serverKey, keyPem(server.privateKey), input.flag("force"));
    report(input, io, { certificate: f.server, key: f.serverKey, ca: f.rootCa });
  },
};

const createDevice: CommandSpec = {
  name: "cert create-device",
  summary:
    "create a device certificate with CN = device id, signed by the root CA: devices/<id>.pem and devices/<id>-key.pem",
  args: [{ name: "device-id", help: "the device's id (its certificate's CN)" }],
  options: [
    { name: "self-signed", help: "self-signed instead (the device authenticates by the printed thumbprint)" },
    OUT_DIR,
    days(365),
    FORCE,
  ],
  notes:
    "Prints the SHA-1 thumbprint. A CA-signed device: edgehub device create <id> --x509-ca, hub config\n" +
    '"trustedDeviceCaFiles": ["<dir>/root-ca.pem"]. A self-signed one: device create <id> --x509-thumbprint <thumbprint>.',
  async run(input, io) {
    const { issue, certPem, keyPem, thumbprint } = await import("../certs/issue.js");
    const deviceId = input.args["device-id"] ?? "";
    // The id names files: only what a device id may be (no `/`, no `..` alone).
    if (!isIdentityId(deviceId) || deviceId === "." || deviceId === "..")
      throw new UsageError(`${JSON.stringify(deviceId)} is not a device id`, this);
    const dir = input.opt("out-dir") ?? "certs";
    const f = files(dir);
    const issuer = input.flag("self-signed")
      ? undefined
      : (await readIssuer(f.rootCa, f.rootKey, "create-ca")).issuer;
    const device = await issue(deviceId, { kind: "client" }, daysOf(input, 365, this), issuer);
    await mkdirDurable(join(dir, "devices"), 0o755);
    await writePair(
      f.device(deviceId),
      certPem(device.cert),
      f.deviceKey(deviceId),
      keyPem(device.privateKey),
      input.flag("force"),
    );
    report(
      input,
      io,
      { certificate: f.device(deviceId), key: f.deviceKey(deviceId) },
      { thumbprint: thumbprint(device.cert) },
    );
  },
};

/** `edgehub cert …`. */
export const certCommands: CommandGroup = {
  name: "cert",
  summary:
    "certificates of a transparent gateway: root CA, edge CA, the hub's server certificate, device certificates",
  commands: [createCa, createEdgeCa, createServer, createDevice],
};
