/** Client certificates for X.509 tests: self-signed, and a CA with leaves under it. */
import "reflect-metadata";
import { createHash, KeyObject, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 86_400_000;

export interface Pem {
  cert: string;
  key: string;
  /** SHA-1 thumbprint of the DER, upper-case hex (IoT Hub's form). */
  thumbprint: string;
}

export interface Issuer extends Pem {
  cert: string;
  signer: webcrypto.CryptoKey;
  name: string;
}

async function keys(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
}

function pem(cert: x509.X509Certificate, key: webcrypto.CryptoKey): Pem {
  return {
    cert: cert.toString("pem"),
    key: KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString(),
    thumbprint: createHash("sha1").update(Buffer.from(cert.rawData)).digest("hex").toUpperCase(),
  };
}

/** When a certificate is valid: by default from a day ago to a day ahead. */
export interface Validity {
  notBefore?: Date;
  notAfter?: Date;
}

async function createSelfSigned(
  cn: string,
  serialNumber: string,
  extensions: x509.Extension[],
  validity: Validity = {},
): Promise<{ cert: x509.X509Certificate; key: webcrypto.CryptoKey }> {
  const k = await keys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber,
    name: `CN=${cn}`,
    notBefore: validity.notBefore ?? new Date(Date.now() - DAY),
    notAfter: validity.notAfter ?? new Date(Date.now() + DAY),
    keys: k as never,
    signingAlgorithm: ALG,
    extensions,
  });
  return { cert, key: k.privateKey };
}

export async function selfSigned(cn: string, validity: Validity = {}): Promise<Pem> {
  const { cert, key } = await createSelfSigned(
    cn,
    "01",
    [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
    validity,
  );
  return pem(cert, key);
}

export async function certificateAuthority(name: string): Promise<Issuer> {
  const { cert, key } = await createSelfSigned(name, "02", [
    new x509.BasicConstraintsExtension(true, 0, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true),
  ]);
  return { ...pem(cert, key), signer: key, name: `CN=${name}` };
}

export async function leaf(ca: Issuer, cn: string): Promise<Pem> {
  const k = await keys();
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: "03",
    subject: `CN=${cn}`,
    issuer: ca.name,
    notBefore: new Date(Date.now() - DAY),
    notAfter: new Date(Date.now() + DAY),
    signingKey: ca.signer as never,
    publicKey: k.publicKey as never,
    signingAlgorithm: ALG,
    extensions: [new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])],
  });
  return pem(cert, k.privateKey);
}
