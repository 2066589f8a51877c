/**
 * The service API's credential: the `iothubowner` policy key, sealed in the store, and the
 * service connection string written for operators (0600, never logged).
 */

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { SecretBox } from "../auth/secret-box.js";
import type { HubConfig } from "../config/config.js";
import { writeDurable } from "../durable-file.js";
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
