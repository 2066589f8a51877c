/**
 * What the service side does the same over HTTPS (the service API) and over AMQP (a `$cbs`
 * put-token, `/messages/devicebound` and the feedback address, what `azure-iothub` uses):
 * the policy token check (`iothubowner` for the hub's own hostname, signed with the key in
 * `<dataDir>/service-connection-string`), and queueing a cloud-to-device message: one check
 * of the target, the size and the ack request, then the device's durable C2D queue
 * (../delivery/device-delivery.ts `sendC2D`). IoT Hub's limits: 64 KB a message, TTL at
 * most two days (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d).
 */
import type { Authenticator } from "../auth/authenticator.js";
import type { Registry } from "../auth/registry.js";
import { parseSasToken, signedByAny } from "../auth/sas.js";
import type { DeviceDelivery, DeviceMessage, SettledOutcome } from "../delivery/device-delivery.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { record } from "../json.js";

/** Largest cloud-to-device body IoT Hub takes. */
export const C2D_MAX_BYTES = 64 * 1024;
/** Longest C2D time to live IoT Hub takes (two days). */
const C2D_MAX_TTL_SECS = 2 * 24 * 3600;
/** The application property naming the feedback the sender asks for (azure-iothub `Message.ack`). */
export const ACK_PROPERTY = "iothub-ack";
/** The feedback a sender may ask for: none, on completion, on rejection or expiry, or both. */
export type Ack = "none" | "positive" | "negative" | "full";
const ACKS: ReadonlySet<string> = new Set<Ack>(["none", "positive", "negative", "full"]);

/** Why a C2D send was refused. */
export type C2dRefusal = "device-not-found" | "invalid" | "too-large" | "queue-full";

/**
 * IoT Hub's cap on the cloud-to-device messages queued for one device (stored and not yet
 * settled or expired): a send past it is refused, DeviceMaximumQueueDepthExceeded.
 */
export const C2D_MAX_QUEUED = 50;

/**
 * A C2D send the hub does not take: IDENTITY_NOT_FOUND for an unknown device,
 * INVALID_ARGUMENT otherwise; `reason` picks each protocol's answer.
 */
export class C2dRefused extends EdgeHubError {
  constructor(
    readonly reason: C2dRefusal,
    message: string,
  ) {
    super(
      reason === "device-not-found"
        ? ErrorCodes.IDENTITY_NOT_FOUND
        : reason === "queue-full"
          ? ErrorCodes.C2D_QUEUE_FULL
          : ErrorCodes.INVALID_ARGUMENT,
      message,
    );
    this.name = "C2dRefused";
  }
}

/** A C2D message as a service client sends it. */
export interface C2dSend extends DeviceMessage {
  /** `iothub-ack`; absent is `none`. */
  ack?: string | undefined;
  /** Absolute expiry, when the sender gave one (AMQP `absolute-expiry-time`): the message's TTL. */
  expiresAt?: Date | undefined;
}

/**
 * Queues a service's C2D message for `deviceId`; resolves once it is durable. Throws
 * {@link C2dRefused} for an unknown device, a body over {@link C2D_MAX_BYTES} or an ack
 * IoT Hub does not know.
 */
export async function sendServiceC2D(
  registry: Registry,
  delivery: DeviceDelivery,
  deviceId: string,
  m: C2dSend,
): Promise<void> {
  if (!registry.getDevice(deviceId)) throw new C2dRefused("device-not-found", `device ${deviceId} not found`);
  if (m.body.length > C2D_MAX_BYTES)
    throw new C2dRefused("too-large", `the body is over ${C2D_MAX_BYTES} bytes`);
  const { ack, expiresAt, ...message } = m;
  // The ack is the sender's to set through `ack` alone, never as an ordinary property.
  const properties = record<string>();
  for (const [k, v] of Object.entries(m.properties ?? {})) if (k !== ACK_PROPERTY) properties[k] = v;
  if (ack !== undefined) {
    const value = ack.toLowerCase();
    if (!ACKS.has(value))
      throw new C2dRefused("invalid", `${ACK_PROPERTY} must be none, positive, negative or full`);
    // Kept with the message: the device sees it (SDK `Message.ack`), the feedback reads it.
    if (value !== "none") properties[ACK_PROPERTY] = value;
  }
  message.properties = properties;
  if (expiresAt !== undefined) {
    const secs = Math.ceil((expiresAt.getTime() - Date.now()) / 1000);
    message.ttlSecs = Math.min(Math.max(secs, 1), C2D_MAX_TTL_SECS);
  }
  await delivery.sendC2D(deviceId, message, (queued) => {
    if (queued >= C2D_MAX_QUEUED)
      throw new C2dRefused(
        "queue-full",
        `DeviceMaximumQueueDepthExceeded: device ${deviceId} has ${C2D_MAX_QUEUED} cloud-to-device messages queued`,
      );
  });
}

/** The feedback `ack` asks for on an outcome: completed → positive, rejected or dead-lettered → negative. */
export function wantsFeedback(ack: string | undefined, outcome: SettledOutcome): boolean {
  if (ack === "full") return true;
  return outcome === "completed" ? ack === "positive" : ack === "negative";
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
