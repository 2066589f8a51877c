/**
 * A cloud-to-device send as IoT Hub's service side takes it, over HTTPS
 * (`POST /devices/{id}/messages/deviceBound`, ./api.ts) and over AMQP (`/messages/devicebound`,
 * ../amqp/service/c2d-send.ts): one check of the target, the size and the ack request, then
 * the device's durable C2D queue (../delivery/device-delivery.ts `sendC2D`). IoT Hub's limits:
 * 64 KB a message, TTL at most two days
 * (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-c2d).
 */
import type { Registry } from "../auth/registry.js";
import type { DeviceDelivery, DeviceMessage, SettledOutcome } from "../delivery/device-delivery.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** Largest C2D body IoT Hub takes. */
export const C2D_MAX_BYTES = 64 * 1024;
/** Longest C2D time to live IoT Hub takes (two days). */
const C2D_MAX_TTL_SECS = 2 * 24 * 3600;
/** The application property naming the feedback the sender asks for (azure-iothub `Message.ack`). */
export const ACK_PROPERTY = "iothub-ack";
/** The feedback a sender may ask for: none, on completion, on rejection or expiry, or both. */
export type Ack = "none" | "positive" | "negative" | "full";
const ACKS: ReadonlySet<string> = new Set<Ack>(["none", "positive", "negative", "full"]);

/** Why a C2D send was refused. */
export type C2dRefusal = "device-not-found" | "invalid" | "too-large";

/** A C2D send the hub does not take; `reason` picks each protocol's answer. */
export class C2dRefused extends EdgeHubError {
  constructor(
    readonly reason: C2dRefusal,
    message: string,
  ) {
    super(
      reason === "device-not-found" ? ErrorCodes.IDENTITY_NOT_FOUND : ErrorCodes.INVALID_ARGUMENT,
      message,
    );
    this.name = "C2dRefused";
  }
}

/** A C2D message as a service client sends it. */
export interface C2dSend extends DeviceMessage {
  /** `iothub-ack`; absent is `none`. */
  ack?: string | undefined;
  /** Absolute expiry, when the sender gave one (AMQP `absolute-expiry-time`). */
  expiresAt?: Date | undefined;
}

/**
 * Stores `m` in `deviceId`'s C2D queue; resolves once it is durable. Throws
 * {@link C2dRefused} for an unknown device, an oversized body or an ack IoT Hub does not know.
 */
export async function sendCloudToDevice(
  registry: Registry,
  delivery: DeviceDelivery,
  deviceId: string,
  m: C2dSend,
): Promise<void> {
  if (!registry.getDevice(deviceId)) throw new C2dRefused("device-not-found", `device ${deviceId} not found`);
  if (m.body.length > C2D_MAX_BYTES)
    throw new C2dRefused("too-large", `the message is over ${C2D_MAX_BYTES} bytes`);
  const { ack, expiresAt, ...message } = m;
  // The ack is the sender's to set through `ack` alone, never as an ordinary property.
  const properties = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(m.properties ?? {})) if (k !== ACK_PROPERTY) properties[k] = v;
  if (ack !== undefined) {
    const value = ack.toLowerCase();
    if (!ACKS.has(value))
      throw new C2dRefused("invalid", `${ACK_PROPERTY} must be none, positive, negative or full`);
    if (value !== "none") properties[ACK_PROPERTY] = value;
  }
  message.properties = properties;
  if (expiresAt !== undefined) {
    const secs = Math.ceil((expiresAt.getTime() - Date.now()) / 1000);
    message.ttlSecs = Math.min(Math.max(secs, 1), C2D_MAX_TTL_SECS);
  }
  await delivery.sendC2D(deviceId, message);
}

/** The feedback `ack` asks for on an outcome: completed → positive, rejected or dead-lettered → negative. */
export function wantsFeedback(ack: string | undefined, outcome: SettledOutcome): boolean {
  if (ack === "full") return true;
  return outcome === "completed" ? ack === "positive" : ack === "negative";
}
