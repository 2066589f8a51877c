/**
 * SASL on the AMQP listener, as IoT Hub offers it: PLAIN with a SAS token as the password
 * (username `{deviceId}@sas.{hub}` or `{deviceId}/modules/{moduleId}@sas.{hub}`,
 * `Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Amqp/SaslIdentityHelper.cs`),
 * ANONYMOUS for clients that then put tokens on `$cbs` (the Node SDK sends no SASL at all,
 * which rhea's server takes as the same), and EXTERNAL for a TLS client certificate.
 * rhea calls a mechanism's `start` with the client's initial response; `outcome` says yes
 * or no.
 */
import type { Authenticator, Principal } from "../auth/authenticator.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { record } from "../json.js";

/** A SASL mechanism as rhea's server drives it. */
interface ServerMechanism {
  outcome: boolean | undefined;
  username: string | undefined;
  start(response: Buffer | undefined, hostname: string | undefined): void;
}

/** What the connection decides for each mechanism. */
export interface SaslHandlers {
  /** PLAIN: true when `password` authenticates `username`. */
  plain(username: string, password: string): boolean;
  /** EXTERNAL: true when the TLS client certificate is accepted (its identity is named by the links). */
  external(): boolean;
}

/** The `deviceId` and `moduleId` a PLAIN username names, and the hub name after `@sas.`. */
export function parseSaslUsername(
  username: string,
): { deviceId: string; moduleId?: string; hubName: string } | undefined {
  const m = /^([^/@]+)(?:\/modules\/([^/@]+))?@sas\.([A-Za-z0-9_-]+)$/.exec(username);
  if (!m) return undefined;
  const [, deviceId = "", moduleId, hubName = ""] = m;
  try {
    const d = decodeURIComponent(deviceId);
    return moduleId === undefined
      ? { deviceId: d, hubName }
      : { deviceId: d, moduleId: decodeURIComponent(moduleId), hubName };
  } catch {
    return undefined;
  }
}

/**
 * The identity a PLAIN login names, once its token is checked (as `authenticateToken` checks
 * a token on MQTT or HTTPS) and found to be for that same identity; throws an `AUTH_*` error.
 */
export function plainLogin(authenticator: Authenticator, username: string, password: string): Principal {
  const ids = parseSaslUsername(username);
  if (!ids)
    throw new EdgeHubError(
      ErrorCodes.AUTH_BAD_TOKEN,
      "username is not {deviceId}[/modules/{moduleId}]@sas.{hub}",
    );
  const named = ids.moduleId === undefined ? ids.deviceId : `${ids.deviceId}/${ids.moduleId}`;
  const principal = authenticator.authenticateToken(password);
  if (principal.clientId !== named)
    throw new EdgeHubError(
      ErrorCodes.AUTH_WRONG_AUDIENCE,
      `the token is for ${principal.clientId}, the username names ${named}`,
    );
  return principal;
}

/** `authzid NUL authcid NUL password` (RFC 4616); undefined when it is not that. */
function plainFields(response: Buffer | undefined): { username: string; password: string } | undefined {
  if (!response) return undefined;
  const first = response.indexOf(0);
  const second = first < 0 ? -1 : response.indexOf(0, first + 1);
  if (second < 0 || response.indexOf(0, second + 1) >= 0) return undefined;
  return {
    username: response.toString("utf8", first + 1, second),
    password: response.toString("utf8", second + 1),
  };
}

/** The server mechanisms of one connection, answering through `on`. */
export function saslMechanisms(
  on: SaslHandlers,
  withExternal: boolean,
): Record<string, () => ServerMechanism> {
  // rhea looks the client's mechanism name up in this object: it inherits nothing.
  const mechanisms = record<() => ServerMechanism>();
  Object.assign(mechanisms, {
    PLAIN: (): ServerMechanism => ({
      outcome: undefined,
      username: undefined,
      start(response) {
        const fields = plainFields(response);
        this.outcome = fields !== undefined && on.plain(fields.username, fields.password);
        if (this.outcome) this.username = fields?.username;
      },
    }),
    ANONYMOUS: (): ServerMechanism => ({
      outcome: undefined,
      username: undefined,
      start() {
        this.outcome = true;
      },
    }),
  });
  if (withExternal)
    mechanisms.EXTERNAL = () => ({
      outcome: undefined,
      username: undefined,
      start() {
        this.outcome = on.external();
      },
    });
  return mechanisms;
}
