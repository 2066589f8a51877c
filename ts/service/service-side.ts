/**
 * What the service side does the same over HTTPS (the service API) and over AMQP (a `$cbs`
 * put-token and `/messages/devicebound`, what `azure-iothub` sends): the policy token check
 * (`iothubowner` for the hub's own hostname, signed with the key in
 * `<dataDir>/service-connection-string`), and queueing a cloud-to-device message.
 */
import type { Authenticator } from "../auth/authenticator.js";
import type { Registry } from "../auth/registry.js";
import { parseSasToken, signedByAny } from "../auth/sas.js";
import type { DeviceDelivery, DeviceMessage } from "../delivery/device-delivery.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** Largest cloud-to-device body IoT Hub takes. */
export const C2D_MAX_BYTES = 64 * 1024;

/**
 * Queues a service's C2D message for `deviceId`: IDENTITY_NOT_FOUND for a device not
 * registered, INVALID_ARGUMENT for a body over {@link C2D_MAX_BYTES}.
 */
export async function sendServiceC2D(
  registry: Registry,
  delivery: DeviceDelivery,
  deviceId: string,
  m: DeviceMessage,
): Promise<void> {
  if (!registry.getDevice(deviceId))
    throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${deviceId} not found`);
  if (m.body.length > C2D_MAX_BYTES)
    throw new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, `the body is over ${C2D_MAX_BYTES} bytes`);
  await delivery.sendC2D(deviceId, m);
}

/** Where a service token is checked. */
export interface ServicePolicy {
  /** The hub's hostname: the token's audience. */
  hostname: string;
  /** The `iothubowner` key. */
  key: string;
  /** Checks the expiry (and its ten-year cap). */
  authenticator: Authenticator;
}

/** Checks `tokenText`; returns when it expires (ms since the epoch), or throws an `AUTH_*` {@link EdgeHubError}. */
export function verifyServiceToken(policy: ServicePolicy, tokenText: string): number {
  const token = parseSasToken(tokenText);
  policy.authenticator.checkExpiry(token.expiry, "iothubowner");
  const audience = token.resource.toLowerCase().replace(/\/$/, "");
  if (token.keyName !== "iothubowner" || audience !== policy.hostname.toLowerCase())
    throw new EdgeHubError(ErrorCodes.AUTH_WRONG_AUDIENCE, "token is not an iothubowner token for this hub");
  if (!signedByAny(token, [policy.key]))
    throw new EdgeHubError(ErrorCodes.AUTH_BAD_SIGNATURE, "token signature does not match");
  return token.expiry * 1000;
}
