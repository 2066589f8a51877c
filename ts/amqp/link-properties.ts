/**
 * IoT Hub's link properties: the SDKs put `com.microsoft:api-version`,
 * `com.microsoft:channel-correlation-id` (twin and method links: `twin:{uuid}`,
 * `methods:{uuid}`) and `com.microsoft:client-version` (their user agent) in the attach's
 * properties. Microsoft's edge hub answers each attach with the client's own properties:
 * its link settings are the client's attach (azure-amqp `src/AmqpLinkSettings.cs`,
 * `Create(Attach)`: `settings.Properties = attach.Properties`), to which
 * `edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Amqp/AmqpRuntimeProvider.cs` adds its
 * link handler's key and removes it again before the link opens; and it keeps the client
 * version as the identity's product info (`linkhandlers/LinkHandler.cs`). This hub answers
 * the same keys with the same values, and only those: what else a client puts in its attach
 * is not sent back (a reflected field is one more thing input controls).
 */
import type { Receiver, Sender } from "rhea";

/** The link properties IoT Hub's clients send, which the hub's attach repeats. */
export const LINK_PROPERTIES = [
  "com.microsoft:api-version",
  "com.microsoft:channel-correlation-id",
  "com.microsoft:client-version",
] as const;

/** Longest client version kept for the log; the rest is cut. */
const MAX_LOGGED = 128;

/** What a client's attach said of itself, for the log. */
export interface LinkIdentity {
  /** `com.microsoft:client-version` (the SDK's user agent), cut to 128 characters. */
  clientVersion?: string;
  /** `com.microsoft:channel-correlation-id`, cut to 128 characters. */
  channel?: string;
}

/**
 * Sets our attach's properties on `link` to the IoT Hub link properties of the client's
 * attach (string values only), before rhea writes our attach; returns what the log keeps.
 */
export function answerLinkProperties(link: Sender | Receiver, remote: unknown): LinkIdentity {
  const given = (remote as { properties?: unknown } | undefined)?.properties;
  if (typeof given !== "object" || given === null) return {};
  const answer = Object.create(null) as Record<string, string>;
  for (const key of LINK_PROPERTIES) {
    const value = Object.hasOwn(given, key) ? (given as Record<string, unknown>)[key] : undefined;
    if (typeof value === "string") answer[key] = value;
  }
  if (Object.keys(answer).length === 0) return {};
  // rhea's typings leave the local attach out; it is written on the connection's next turn.
  (
    link as unknown as { local: { attach: { properties?: Record<string, string> } } }
  ).local.attach.properties = answer;
  const version = answer["com.microsoft:client-version"];
  const channel = answer["com.microsoft:channel-correlation-id"];
  return {
    ...(version === undefined ? {} : { clientVersion: version.slice(0, MAX_LOGGED) }),
    ...(channel === undefined ? {} : { channel: channel.slice(0, MAX_LOGGED) }),
  };
}
