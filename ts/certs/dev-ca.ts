/**
 * The development CA of a hub started without certificates of its own: an ECDSA P-256 CA
 * and a server certificate for the hub's hostname (plus localhost), generated on first
 * start under `<dataDir>/certs/` and reused after. Children trust `ca.pem`; the hub serves
 * the server certificate alone.
 */
import { KeyObject, webcrypto } from "node:crypto";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
// @peculiar/x509 resolves its algorithms through tsyringe, which needs this polyfill;
// this module is loaded only when a hub runs on the development CA.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { mkdirDurable, writeDurable } from "../durable-file.js";
import { servedChain } from "./chain.js";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 24 * 3600 * 1000;

/** PEM files a TLS listener needs. */
export interface TlsMaterial {
  ca: string;
  cert: string;
  key: string;
  /** Where the CA certificate lives, for clients to trust. */
  caFile: string;
}

async function keyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

function pemKey(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString();
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString("hex")
    .replace(/^[89a-f]/, "1");
}

async function writeSecret(path: string, data: string): Promise<void> {
  await writeDurable(path, data, 0o600);
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
    if (new x509.X509Certificate(cert).subject === `CN=${hostname}`)
      return { ca, cert: servedChain(cert), key, caFile: files.ca };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  await mkdirDurable(dir, 0o755);
  const notBefore = new Date(Date.now() - DAY);
  let ca: string;
  let caKeys: CryptoKeyPair;
  let caCert: x509.X509Certificate;
  try {
    ca = await readFile(files.ca, "utf8");
    caCert = new x509.X509Certificate(ca);
    const caPrivate = await readFile(files.caKey, "utf8");
    const der = Buffer.from(caPrivate.replace(/-----[^-]+-----|\s/g, ""), "base64");
    const privateKey = await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
    caKeys = {
      privateKey,
      publicKey: (await caCert.publicKey.export(ALG, ["verify"])) as unknown as CryptoKey,
    };
  } catch {
    caKeys = await keyPair();
    caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: "CN=edgehub development CA",
      notBefore,
      notAfter: new Date(Date.now() + 3650 * DAY),
      keys: caKeys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    ca = caCert.toString("pem");
    await writeDurable(files.ca, ca, 0o644);
    await writeSecret(files.caKey, pemKey(caKeys.privateKey));
  }
  const leafKeys = await keyPair();
  const names: x509.JsonGeneralName[] = [...new Set([hostname, "localhost"])].map((n) => ({
    type: isIP(n) ? "ip" : "dns",
    value: n,
  }));
  names.push({ type: "ip", value: "127.0.0.1" });
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${hostname}`,
    issuer: caCert.subject,
    notBefore,
    notAfter: new Date(Date.now() + 825 * DAY),
    signingKey: caKeys.privateKey,
    publicKey: leafKeys.publicKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  // The leaf alone: the root is what clients trust, never what the hub sends (as IoT Hub).
  const cert = `${leaf.toString("pem")}\n`;
  const key = pemKey(leafKeys.privateKey);
  await writeDurable(files.cert, cert, 0o644);
  await writeSecret(files.key, key);
  return { ca, cert, key, caFile: files.ca };
}
