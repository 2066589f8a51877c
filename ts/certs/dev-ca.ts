/**
 * The development CA of a hub started without certificates of its own: an ECDSA P-256 CA
 * and a server certificate for the hub's hostname (plus localhost), generated on first
 * start under `<dataDir>/certs/` and reused after. Children trust `ca.pem`; the hub serves
 * the server certificate alone.
 */
import { X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { mkdirDurable, writeDurable } from "../durable-file.js";
import { servedChain } from "./chain.js";
import type { Issued } from "./issue.js";

/** PEM files a TLS listener needs. */
export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
  /** Where the CA certificate lives, for clients to trust. */
  caFile: string;
}

/** Loads the dev CA and server certificate from `dir`, generating them on first use. */
export async function devTls(dir: string, hostname: string): Promise<TlsMaterial> {
  const files = {
    ca: join(dir, "ca.pem"),
    caKey: join(dir, "ca-key.pem"),
    cert: join(dir, "server.pem"),
    key: join(dir, "server-key.pem"),
  };
  try {
    const [ca, cert, key] = await Promise.all([
      readFile(files.ca, "utf8"),
      readFile(files.cert, "utf8"),
      readFile(files.key, "utf8"),
    ]);
    // Files written before the served chain left the root out still carry it.
    if (new X509Certificate(cert).subject === `CN=${hostname}`)
      return { ca, cert: servedChain(cert), key, caFile: files.ca };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  // The X.509 library costs the process ~15 MB of RSS: loaded only to issue certificates,
  // not on every start of a hub whose certificates exist.
  const { certPem, issue, keyPem, loadIssuer } = await import("./issue.js");
  await mkdirDurable(dir, 0o755);
  let ca: string;
  let issuer: Issued;
  try {
    ca = await readFile(files.ca, "utf8");
    issuer = await loadIssuer(ca, await readFile(files.caKey, "utf8"));
  } catch {
    issuer = await issue("edgehub development CA", { kind: "ca", pathLength: 1 }, 3650);
    ca = certPem(issuer.cert);
    await writeDurable(files.ca, ca, 0o644);
    await writeDurable(files.caKey, keyPem(issuer.privateKey), 0o600);
  }
  const names = [...new Set([hostname, "localhost", "127.0.0.1"])];
  const leaf = await issue(hostname, { kind: "server", names }, 825, issuer);
  // The leaf alone: the root is what clients trust, never what the hub sends (as IoT Hub).
  const cert = certPem(leaf.cert);
  const key = keyPem(leaf.privateKey);
  await writeDurable(files.cert, cert, 0o644);
  await writeDurable(files.key, key, 0o600);
  return { ca, cert, key, caFile: files.ca };
}
