/**
 * How this hub proves who it is to its parent. Towards a hub (Azure IoT Hub or a parent
 * edge): every login and scope call carries a SAS token of this edge's `$edgeHub` module,
 * `sr=urlenc({hub}/devices/{edge}/modules/$edgeHub)`, no `skn`, signed with its primary key
 * (Azure/iotedge `edge-util/src/Microsoft.Azure.Devices.Edge.Util/ModuleTokenProvider.cs#GetTokenAsync`,
 * `SasTokenHelper.cs#BuildSasToken`); the edge *device's* credential (its key or X.509
 * certificate) only fetches those keys (`edgehub-module.ts`). Tokens are made fresh for
 * every connect and call. Also the TLS options to reach the parent, trusting the configured CA.
 */
import { readFileSync } from "node:fs";
import { createSasToken } from "../auth/sas.js";
import type { ParentConfig } from "../config/config.js";

/** Lifetime of the tokens this hub makes for itself: IoT Edge's 1 h (`CommonModule.cs#Load`). */
const TOKEN_SECS = 3600;

/** TLS material and tokens for the parent. */
export class ParentCredentials {
  readonly #parent: ParentConfig;
  readonly ca: Buffer | undefined;
  readonly cert: Buffer | undefined;
  readonly key: Buffer | undefined;
  /** The `$edgeHub` module's primary key, once fetched. */
  #moduleKey: (() => string | undefined) | undefined;

  constructor(parent: ParentConfig) {
    this.#parent = parent;
    this.ca = parent.caFile ? readFileSync(parent.caFile) : undefined;
    this.cert = parent.certFile ? readFileSync(parent.certFile) : undefined;
    this.key = parent.keyFile ? readFileSync(parent.keyFile) : undefined;
  }

  /** Signs {@link ParentCredentials.token} with the key `moduleKey` gives (the `$edgeHub` primary key). */
  useModuleKey(moduleKey: () => string | undefined): void {
    this.#moduleKey = moduleKey;
  }

  /**
   * The `$edgeHub` token every upstream login and scope call carries; undefined until its
   * keys are fetched (nothing logs in upstream before).
   */
  token(now = Date.now()): string | undefined {
    const key = this.#moduleKey?.();
    if (key === undefined) return undefined;
    const resource = `${this.#parent.hubHostname}/devices/${this.#parent.deviceId}/modules/$edgeHub`;
    return createSasToken(resource, key, Math.floor(now / 1000) + TOKEN_SECS);
  }

  /**
   * A token of this hub's *device* identity (`sr={hub}/devices/{edge}`, device key), for the
   * module identity call only; undefined when the device logs in by certificate.
   */
  deviceToken(now = Date.now()): string | undefined {
    const key = this.#parent.sharedAccessKey;
    if (key === undefined) return undefined;
    const resource = `${this.#parent.hubHostname}/devices/${this.#parent.deviceId}`;
    return createSasToken(resource, key, Math.floor(now / 1000) + TOKEN_SECS);
  }

  /**
   * TLS options of a connection to the parent; `clientCertificate: false` leaves the
   * device's certificate out (the `$edgeHub` token is the credential of those links).
   */
  tls(clientCertificate = true): { ca?: Buffer; cert?: Buffer; key?: Buffer; servername: string } {
    return {
      servername: this.#parent.hostname,
      ...(this.ca ? { ca: this.ca } : {}),
      ...(clientCertificate && this.cert && this.key ? { cert: this.cert, key: this.key } : {}),
    };
  }
}
