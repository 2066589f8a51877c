/**
 * How a command reaches a running hub: the service connection string (given, or the one the
 * hub wrote to its data dir), the HTTPS port and the CA to trust.
 */
import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { type Parsed, UsageError } from "./command.js";
import { ServiceClient } from "./service-client.js";

/** What a service SAS token is made from: the parts of a service connection string. */
export interface ServiceLogin {
  /** `HostName`: the hub's hostname, the token's audience and the TLS server name. */
  hostname: string;
  /** `SharedAccessKeyName`: the policy (the hub accepts `iothubowner`). */
  keyName: string;
  /** `SharedAccessKey`: the policy key, base64. */
  key: string;
}

/**
 * Parses `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`. Throws `INVALID_ARGUMENT`
 * naming the missing part (never echoing the key).
 */
export function parseServiceConnectionString(connectionString: string): ServiceLogin {
  const fields = new Map<string, string>();
  for (const part of connectionString.trim().split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const hostname = fields.get("HostName");
  const keyName = fields.get("SharedAccessKeyName");
  const key = fields.get("SharedAccessKey");
  if (!hostname || !keyName || !key) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      "the service connection string needs HostName, SharedAccessKeyName and SharedAccessKey",
    );
  }
  return { hostname, keyName, key };
}

/**
 * The login for the service API: `login` (a service connection string) when given, else
 * the one the hub wrote to `<dataDir>/service-connection-string`.
 */
export async function readServiceLogin(options: { login?: string; dataDir: string }): Promise<ServiceLogin> {
  if (options.login !== undefined) return parseServiceConnectionString(options.login);
  const file = join(options.dataDir, "service-connection-string");
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (err) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): pass --data-dir with the hub's data directory, or --login with its service connection string`,
      { cause: err },
    );
  }
  return parseServiceConnectionString(text);
}

/**
 * The client a command's login options name: `--login` or `<--data-dir>/service-connection-string`,
 * `--port` (default 8443), `--ca` (default `<dataDir>/certs/ca.pem` when present).
 */
export async function clientFor(input: Parsed): Promise<ServiceClient> {
  const portText = input.opt("port") ?? "8443";
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 1 || port > 65535)
    throw new UsageError(`--port ${portText} is not a port number 1-65535`);
  const dataDir = input.opt("data-dir") ?? "./edgehub-data";
  const loginText = input.opt("login");
  const login = await readServiceLogin({ dataDir, ...(loginText === undefined ? {} : { login: loginText }) });
  const ca = await readCa(input.opt("ca"), dataDir);
  return new ServiceClient({ ...login, port, ...(ca === undefined ? {} : { ca }) });
}

/** The CA to trust: `--ca`, else `<dataDir>/certs/ca.pem` when present, else the system's. */
async function readCa(file: string | undefined, dataDir: string): Promise<string | undefined> {
  const caPath = file ?? join(dataDir, "certs", "ca.pem");
  if (file === undefined) {
    try {
      await access(caPath);
    } catch {
      return undefined;
    }
  }
  try {
    return await readFile(caPath, "utf8");
  } catch (err) {
    throw new EdgeHubError(
      ErrorCodes.INVALID_ARGUMENT,
      `cannot read --ca ${caPath} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      { cause: err },
    );
  }
}

/** Runs `use` with the client `input`'s login options name, closing it after. */
export async function withClient<T>(input: Parsed, use: (client: ServiceClient) => Promise<T>): Promise<T> {
  const client = await clientFor(input);
  try {
    return await use(client);
  } finally {
    client.close();
  }
}
