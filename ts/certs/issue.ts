/**
 * Issuing X.509 certificates with ECDSA P-256 keys: CAs, a hub's server certificate, device
 * (client) certificates. Used by the development CA (./dev-ca.ts) and `edgehub cert`.
 */
import { createHash, KeyObject, webcrypto } from "node:crypto";
import { isIP } from "node:net";
// @peculiar/x509 resolves its algorithms through tsyringe, which needs this polyfill.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY = 24 * 3600 * 1000;

/** A certificate with the private key that signs with it. */
export interface Issued {
  cert: x509.X509Certificate;
  privateKey: CryptoKey;
}

async function keyPair(): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
}

/** A private key as PKCS#8 PEM. */
export function keyPem(key: CryptoKey): string {
  return KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString();
}

/** A certificate as PEM, with a trailing newline. */
export function certPem(cert: x509.X509Certificate): string {
  return `${cert.toString("pem")}\n`;
}

/** The SHA-1 thumbprint of a certificate, upper-case hex: IoT Hub's `x509Thumbprint` form. */
export function thumbprint(cert: x509.X509Certificate): string {
  return createHash("sha1").update(Buffer.from(cert.rawData)).digest("hex").toUpperCase();
}

function serial(): string {
  return Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
    .toString("hex")
    .replace(/^[89a-f]/, "1");
}

/** A CA certificate and key read back from PEM (the first certificate of `certText`). */
export async function loadIssuer(certText: string, keyText: string): Promise<Issued> {
  const cert = new x509.X509Certificate(certText);
  const der = Buffer.from(keyText.replace(/-----[^-]+-----|\s/g, ""), "base64");
  const privateKey = await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
  return { cert, privateKey };
}

/** Escapes a value for an X.500 name (RFC 4514), so a device id cannot add attributes. */
function rdn(value: string): string {
  return value.replace(/[\\,+"<>;=#]/g, (c) => `\\${c}`).replace(/^ | $/g, (c) => `\\${c}`);
}

/** What kind of certificate to issue. */
export type Profile =
  /** A CA that may sign CAs down to `pathLength` levels below it. */
  | { kind: "ca"; pathLength: number }
  /** A TLS server certificate for these DNS names and IP addresses. */
  | { kind: "server"; names: readonly string[] }
  /** A TLS client certificate (a device's). */
  | { kind: "client" };

/**
 * Issues a certificate for `CN={commonName}` signed by `issuer`, or self-signed without one,
 * valid from a day ago (clock skew) for `days`.
 */
export async function issue(
  commonName: string,
  profile: Profile,
  days: number,
  issuer?: Issued,
): Promise<Issued> {
  const keys = await keyPair();
  const extensions: x509.Extension[] = [await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)];
  if (profile.kind === "ca") {
    extensions.push(
      new x509.BasicConstraintsExtension(true, profile.pathLength, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    );
  } else {
    extensions.push(
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([
        profile.kind === "server" ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth,
      ]),
    );
    if (profile.kind === "server")
      extensions.push(
        new x509.SubjectAlternativeNameExtension(
          profile.names.map((n) => ({ type: isIP(n) ? "ip" : "dns", value: n })),
        ),
      );
  }
  if (issuer) extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.cert));
  const validity = { notBefore: new Date(Date.now() - DAY), notAfter: new Date(Date.now() + days * DAY) };
  const subject = `CN=${rdn(commonName)}`;
  const cert = issuer
    ? await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject,
        issuer: issuer.cert.subject,
        ...validity,
        signingKey: issuer.privateKey,
        publicKey: keys.publicKey,
        signingAlgorithm: ALG,
        extensions,
      })
    : await x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: serial(),
        name: subject,
        ...validity,
        keys,
        signingAlgorithm: ALG,
        extensions,
      });
  return { cert, privateKey: keys.privateKey };
}
