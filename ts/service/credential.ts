/**
 * The service API's credential: the `iothubowner` policy key, sealed in the store, and the
 * service connection string written for operators (0600, never logged).
 */

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Authenticator } from "../auth/authenticator.js";
import { parseSasToken, signedByAny } from "../auth/sas.js";
import type { SecretBox } from "../auth/secret-box.js";
import type { HubConfig } from "../config/config.js";
import { writeDurable } from "../durable-file.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import type { MessageStore } from "../store/index.js";

/**
 * The `iothubowner` policy key: created on first start, sealed in the store, and written
 * as a service connection string to `<dataDir>/service-connection-string` (0600).
 */
export async function serviceCredential(
  store: MessageStore,
  box: SecretBox,
  config: HubConfig,
): Promise<{ key: string; connectionString: string; file: string }> {
  const context = "service/iothubowner";
  const sealed = await store.kv.get("service", "iothubowner");
  let key: string;
  if (sealed) key = box.open(sealed, context).toString("utf8");
  else {
    key = randomBytes(32).toString("base64");
    await store.kv.put("service", "iothubowner", box.seal(Buffer.from(key), context));
  }
  const connectionString = `HostName=${config.hostname};SharedAccessKeyName=iothubowner;SharedAccessKey=${key}`;
  const file = join(config.dataDir, "service-connection-string");
  await writeDurable(file, `${connectionString}\n`, 0o600);
  return { key, connectionString, file };
}

/**
 * Checks a service token as IoT Hub's service endpoints do, over HTTPS (the `Authorization`
 * header) and AMQP (`$cbs` put-token): an `iothubowner` policy token for this hub's name,
 * signed with the policy key, not expired. Returns its expiry (seconds since the epoch);
 * throws an `AUTH_*` {@link EdgeHubError} saying why not.
 */
export function checkServiceToken(
  text: string,
  hostname: string,
  serviceKey: string,
  authenticator: Authenticator,
): number {
  const token = parseSasToken(text);
  authenticator.checkExpiry(token.expiry, "iothubowner");
  const audience = token.resource.toLowerCase().replace(/\/$/, "");
  if (token.keyName !== "iothubowner" || audience !== hostname.toLowerCase())
    throw new EdgeHubError(ErrorCodes.AUTH_WRONG_AUDIENCE, "token is not an iothubowner token for this hub");
  if (!signedByAny(token, [serviceKey]))
    throw new EdgeHubError(ErrorCodes.AUTH_BAD_SIGNATURE, "token signature does not match");
  return token.expiry;
}
