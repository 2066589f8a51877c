/**
 * How this hub proves who it is to its parent: a SAS token signed with its device key
 * (fresh for every connect and call), or its X.509 certificate. Also the TLS options to
 * reach the parent, trusting the configured CA.
 */
import { readFileSync } from "node:fs";
import { createSasToken } from "../auth/sas.js";
import type { ParentConfig } from "../config/config.js";

/** Lifetime of the tokens this hub makes for itself. */
const TOKEN_SECS = 3600;

/** TLS material and tokens for the parent. */
export class ParentCredentials {
  readonly #parent: ParentConfig;
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;

  constructor(parent: ParentConfig) {
    this.#parent = parent;
    this.ca = parent.caFile ? readFileSync(parent.caFile) : undefined;
    this.cert = parent.certFile ? readFileSync(parent.certFile) : undefined;
    this.key = parent.keyFile ? readFileSync(parent.keyFile) : undefined;
  }

  /** A token for this hub's device identity on the parent; undefined when it logs in by certificate. */
  token(now = Date.now()): string | undefined {
    const key = this.#parent.sharedAccessKey;
    if (key === undefined) return undefined;
    const resource = `${this.#parent.hubHostname}/devices/${this.#parent.deviceId}`;
    return createSasToken(resource, key, Math.floor(now / 1000) + TOKEN_SECS);
  }

  /** TLS options of every connection to the parent. */
  tls(): { ca?: Buffer; cert?: Buffer; key?: Buffer; servername: string } {
    return {
      servername: this.#parent.hostname,
      ...(this.ca ? { ca: this.ca } : {}),
      ...(this.cert && this.key ? { cert: this.cert, key: this.key } : {}),
    };
  }
}
