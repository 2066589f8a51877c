/**
 * Forwarding to a plain MQTT broker (Mosquitto, EMQX, HiveMQ, AWS IoT Core): one MQTT 5
 * link for every sender, topics from a template (`{deviceId}`, `{moduleId}`,
 * `{outputName}`), properties as MQTT 5 user properties. Same guarantees as towards a
 * hub: durable before the device's ack, stored order, at least once.
 */
import type { ParentConfig } from "../config/config.js";
import type { Logger } from "../log.js";
import type { StoredMessage } from "../store/index.js";
import type { ParentCredentials } from "./credentials.js";
import { Link } from "./link.js";
import type { Uplink, WireForm } from "./uplink.js";

const LANE = "bridge";

/** Fills a topic template; an absent value leaves its segment out. */
export function topicFor(template: string, m: StoredMessage): string {
  const values: Record<string, string | undefined> = {
    deviceId: m.properties["$.cdid"],
    moduleId: m.properties["$.cmid"],
    outputName: m.properties["$.on"],
  };
  return template
    .replace(/\{(deviceId|moduleId|outputName)\}/g, (_, k: string) => values[k] ?? "")
    .replace(/\/{2,}/g, "/")
    .replace(/\/$/, "");
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

  unsendable(): undefined {
    // A broker's limit is its own; what it refuses comes back as an MQTT 5 reason code.
    return undefined;
  }

  wireFormOf(m: StoredMessage): WireForm {
    return { topic: topicFor(this.#parent.topic, m), payload: m.body, userProperties: m.properties };
  }
}
