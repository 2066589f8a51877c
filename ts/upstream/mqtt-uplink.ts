/**
 * Forwarding to a plain MQTT broker (Mosquitto, EMQX, HiveMQ, AWS IoT Core): one MQTT 5
 * link for every sender, topics from a template (`{deviceId}`, `{moduleId}`,
 * `{outputName}`), properties as MQTT 5 user properties. Same guarantees as towards a
 * hub: durable before the device's ack, stored order, at least once.
 *
 * A value put into the template is one topic level whatever it holds: `%`, `/`, `+`, `#`
 * and control characters are percent-encoded (UTF-8, as `encodeURIComponent`), and so is
 * a `$` that would start the topic (reserved for the broker's own topics). A message whose
 * topic still cannot be valid (empty, over 65,535 bytes) is dead-lettered with the reason;
 * it never reaches the broker, which would drop the connection and stall every device.
 */
import type { ParentConfig } from "../config/config.js";
import type { Logger } from "../log.js";
import type { StoredMessage } from "../store/index.js";
import { FORWARD_ID } from "../vocabulary.js";
import type { ParentCredentials } from "./credentials.js";
import { Link } from "./link.js";
import { busyRefusal } from "./mqtt-client.js";
import type { Uplink, WireForm } from "./uplink.js";

const LANE = "bridge";

/** Characters a value may not carry into a topic as they are: the escape itself, the level separator, wildcards, controls. */
const UNSAFE = /[%/+#\p{Cc}]/gu;
/** MQTT's longest string, in UTF-8 bytes. */
const MAX_TOPIC_BYTES = 65_535;

/** A value as one topic level: see the module's header for what is escaped. */
export function topicLevel(value: string): string {
  return value.replace(UNSAFE, (c) => encodeURIComponent(c));
}

/** Fills a topic template; an absent value leaves its segment out. Values are escaped ({@link topicLevel}). */
export function topicFor(template: string, m: StoredMessage): string {
  const values: Record<string, string | undefined> = {
    deviceId: m.properties["$.cdid"],
    moduleId: m.properties["$.cmid"],
    outputName: m.properties["$.on"],
  };
  const topic = template
    .replace(/\{(deviceId|moduleId|outputName)\}/g, (_, k: string) => topicLevel(values[k] ?? ""))
    .replace(/\/{2,}/g, "/")
    .replace(/\/$/, "");
  // `$` topics are the broker's: one only where the operator's template says so.
  return topic.startsWith("$") && !template.startsWith("$") ? `%24${topic.slice(1)}` : topic;
}

/** Why `topic` can never be published, or undefined. */
export function invalidTopic(topic: string): string | undefined {
  if (topic === "") return "the topic template gives an empty topic";
  // Lone surrogates cannot be written as UTF-8 (the wire decoder lets none in; checked anyway).
  if (/\p{Cs}/u.test(topic)) return "the topic is not valid Unicode";
  const bytes = Buffer.byteLength(topic);
  if (bytes > MAX_TOPIC_BYTES) return `the topic is ${bytes} bytes, over MQTT's ${MAX_TOPIC_BYTES}`;
  return undefined;
}

/** Broker uplink. */
export class MqttUplink implements Uplink {
  readonly #parent: ParentConfig;
  /** The one link: presence and the only lane. */
  readonly edgeLink: Link;

  constructor(parent: ParentConfig, credentials: ParentCredentials, log: Logger) {
    this.#parent = parent;
    this.edgeLink = new Link(
      LANE,
      () => ({
        host: parent.hostname,
        port: parent.port,
        protocolVersion: 5,
        clientId: parent.deviceId,
        ...(parent.username === undefined ? {} : { username: parent.username }),
        ...(parent.password === undefined ? {} : { password: parent.password }),
        ...credentials.tls(),
      }),
      parent,
      log,
    );
    this.edgeLink.keepTrying = true;
  }

  laneOf(): string {
    return LANE;
  }

  linkFor(): Link {
    return this.edgeLink;
  }

  release(): void {
    // The bridge link lives as long as the upstream.
  }

  refusedForGood(): boolean {
    // One login for everything: a refusal is the operator's to fix; messages wait.
    return false;
  }

  transientRefusal(code: number): boolean {
    return busyRefusal(code);
  }

  unsendable(m: StoredMessage): string | undefined {
    // Beyond a valid topic, a broker's limits are its own: what it refuses comes back as an
    // MQTT 5 reason code (the message is dead-lettered then).
    return invalidTopic(topicFor(this.#parent.topic, m));
  }

  wireFormOf(m: StoredMessage): WireForm {
    const props = m.properties;
    let userProperties = props;
    if (props[FORWARD_ID] !== undefined) {
      // A child hub's id for its own resends: internal to the hubs, not for the broker's readers.
      const { [FORWARD_ID]: _, ...rest } = props;
      userProperties = rest;
    }
    return { topic: topicFor(this.#parent.topic, m), payload: m.body, userProperties };
  }
}
