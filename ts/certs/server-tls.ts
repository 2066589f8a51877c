/**
 * The TLS material of the device-facing listeners: the configured files, or the development
 * CA under `<dataDir>/certs` when there are none; and the CAs device certificates must chain to.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { HubConfig } from "../config/config.js";
import { servedChain } from "./chain.js";
import type { TlsMaterial } from "./dev-ca.js";

/** The server's certificate chain, key and CA, and the trusted device CAs (PEM). */
export async function serverTls(
  config: Pick<HubConfig, "tls" | "dataDir" | "hostname" | "trustedDeviceCaFiles">,
): Promise<TlsMaterial & { deviceCas: string[] }> {
  const deviceCas = await Promise.all(config.trustedDeviceCaFiles.map((f) => readFile(f, "utf8")));
  const own = config.tls;
  if (own)
    return {
      cert: servedChain(await readFile(own.certFile, "utf8")),
      key: await readFile(own.keyFile, "utf8"),
      ca: await readFile(own.caFile, "utf8"),
      caFile: own.caFile,
      deviceCas,
    };
  // Loaded only when used: the certificate library is not needed with files of one's own.
  const { devTls } = await import("./dev-ca.js");
  return { ...(await devTls(join(config.dataDir, "certs"), config.hostname)), deviceCas };
}
