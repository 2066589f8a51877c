/**
 * The certificate chain a listener serves. As IoT Hub: the leaf and its intermediates,
 * never the self-signed root: clients must already trust the root, and one they are sent
 * proves nothing (and costs bytes in every handshake).
 */
import { X509Certificate } from "node:crypto";

const PEM = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

/** `pem` (one or more certificates) without its self-signed roots. */
export function servedChain(pem: string): string {
  const blocks = pem.match(PEM) ?? [];
  const kept = blocks.filter((block) => {
    const cert = new X509Certificate(block);
    return !(cert.subject === cert.issuer && cert.verify(cert.publicKey));
  });
  // A lone self-signed server certificate is the whole chain: keep it.
  return kept.length > 0 ? `${kept.join("\n")}\n` : pem;
}
