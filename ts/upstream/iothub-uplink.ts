/**
 * Forwarding on IoT Hub's device protocol (to Azure IoT Hub, a root hub or a parent edge
 * hub): one MQTT connection per identity, as IoT Hub's MQTT carries one device per
 * connection. As Microsoft's edge hub, this hub connects itself as `{edge}/$edgeHub` (one
 * link: presence, the `$edgeHub` settings twin and messages sent as `$edgeHub`) and logs
 * in for every identity of its scope with its `$edgeHub` token, naming the identity in the
 * username's `auth-chain`, so a child's expired token never strands its stored messages.
 */
import { readFileSync } from "node:fs";
import type { Registry } from "../auth/registry.js";
import type { ParentConfig } from "../config/config.js";
import { own, parseJson } from "../json.js";
import type { Logger } from "../log.js";
import { encodeProperty } from "../protocol/topics.js";
import type { StoredMessage } from "../store/index.js";
import { FORWARD_ID } from "../vocabulary.js";
import { c2dFilter, isC2dTopic } from "./c2d-relay.js";
import type { ParentCredentials } from "./credentials.js";
import { ConnectPacer, Link, type LinkSession } from "./link.js";
import { METHOD_CALLS } from "./method-relay.js";
import { busyRefusal } from "./mqtt-client.js";
import { DESIRED_UPDATES, TWIN_RESPONSES, TWIN_TOPICS } from "./twin-sync.js";
import type { Uplink, WireForm } from "./uplink.js";

/**
 * What an identity's link listens to from its start: answers to its twin requests. Method
 * calls and desired-property notifications are subscribed only while its client listens
 * for them here (`MethodRelay`, `TwinSync.follow`), so the parent answers a call to a client
 * that does not listen at once (404) instead of waiting for an answer that never comes.
 */
const IDENTITY_TOPICS = [TWIN_RESPONSES];

/** IoT Hub's message size limit. */
const MAX_MESSAGE_BYTES = 256 * 1024;
/**
 * The username's api-version: the C# device SDK's `ClientApiVersionHelper.ApiVersionLatest`
 * (Azure/azure-iot-sdk-csharp `iothub/device/src/Common/Api/ClientApiVersionHelper.cs`),
 * which Microsoft's edge hub sends through the SDK it pins. Stored copies say
 * `2019-07-01-preview` and `2020-09-30`; the later one is taken (docs/upstream-forms.md §10:
 * which SDK each edgeHub release pins is unknown). edgehub parents accept any.
 */
export const API_VERSION = "2020-09-30";

/** This package's version (for DeviceClientType); "unknown" if package.json cannot be read. */
function packageVersion(): string {
  try {
    const pkg = parseJson(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    const v = own(pkg, "version");
    return typeof v === "string" ? v : "unknown";
  } catch {
    return "unknown";
  }
}

/**
 * The username's `DeviceClientType`. Microsoft's is the SDK's product info followed by the
 * edge hub's, ending `EdgeHub/{version}` (CP `CloudConnection.cs#ConnectToIoTHub`,
 * `SetProductInfo`; `Constants.IoTEdgeProductInfoIdentifier = "EdgeHub"`); the rest of its
 * text (`ProductInfo.ToString`, `ConnectionMetadata.BuildEdgeProductInfo`) was not read, so
 * ours says what we are and ends the same way.
 */
export const DEVICE_CLIENT_TYPE = (() => {
  const version = packageVersion();
  return `edgehub/${version} EdgeHub/${version}`;
})();
/**
 * Logins of a child refused this many times in a row, while the hub's own login works: its
 * messages are dead-lettered. CONNACK 3 (server unavailable) is not counted: it is transient
 * (`MqttIotHubAdapter.cs#ProcessConnectAckAsync`), the lane waits and retries.
 */
const REFUSALS_FOR_GOOD = 3;
/**
 * Identity links connect at most one per this many ms (100 a second), so the burst after the
 * parent returns is spread and IoT Hub does not throttle it; the hub's own links go first.
 */
export const LINK_CONNECT_INTERVAL_MS = 10;

/** The forwarder id's key in a property bag. */
const FORWARD_ID_KEY = encodeURIComponent(FORWARD_ID);

/**
 * The system properties sent up, when the device set them, in this order, before the
 * application properties: what Microsoft's edge hub copies into its upstream message
 * (`Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.CloudProxy/DeviceClientMessageConverter.cs#FromMessage`,
 * the SDK's `MqttIotHubAdapter.cs#s_fromSystemPropertiesMap`). Every other `$.` key stays
 * here: the sender (`$.cdid`, `$.cmid`: the parent stamps the connection's identity), a local
 * input or output name (`$.in`, `$.on`), the expiry (`$.exp`), a child hub's forwarder id.
 */
const SENT_SYSTEM = ["$.mid", "$.cid", "$.uid", "$.ct", "$.ce", "$.ctime", "$.schema", "$.sub"];

/** The client id a stored message was sent by. */
export function senderOf(m: StoredMessage): string {
  const d = m.properties["$.cdid"] ?? "";
  const mod = m.properties["$.cmid"];
  return mod === undefined ? d : `${d}/${mod}`;
}

/** IoT Hub protocol uplink. */
export class IotHubUplink implements Uplink {
  readonly #parent: ParentConfig;
  readonly #credentials: ParentCredentials;
  readonly #registry: Registry;
  readonly #log: Logger;
  /**
   * The hub's own link as `{edge}/$edgeHub`: presence, the `$edgeHub` settings twin, and the
   * lane of messages sent as `$edgeHub`.
   */
  readonly edgeLink: Link;
  /** The hub's own client id, `{edge}/$edgeHub`. */
  readonly edgeHubId: string;
  /**
   * The forwarder id of a stored message ({@link FORWARD_ID}), url-encoded, sent with it so the parent
   * drops a resend and nothing else; unset, messages go without one (a parent that does
   * not know the property). The upstream sets it per kind of parent.
   */
  forwardId: ((queue: string, offset: number) => string) | undefined;
  /**
   * One link per identity, shared by its lane and its twin (the parent keeps one connection
   * per client id: two would take each other over), counted by users.
   */
  readonly #links = new Map<string, { link: Link; users: number }>();
  /**
   * Called when the parent refuses a client's link while it accepts this hub's own: the
   * parent no longer lets that identity in (unknown, disabled, moved), so the cached scope
   * is stale. The upstream asks for a scope sync.
   */
  identityRefused: ((clientId: string) => void) | undefined;
  /** Paces the connects of identity links (not the hub's own). */
  readonly #pacer = new ConnectPacer(LINK_CONNECT_INTERVAL_MS);

  constructor(parent: ParentConfig, credentials: ParentCredentials, registry: Registry, log: Logger) {
    this.#parent = parent;
    this.#credentials = credentials;
    this.#registry = registry;
    this.#log = log;
    this.edgeHubId = `${parent.deviceId}/$edgeHub`;
    // Chain `edge1/$edgeHub;edge1`: HC `ServiceIdentityTree.cs#GetAuthChain` special-cases the
    // actor's own `$edgeHub`.
    this.edgeLink = this.#link(this.edgeHubId, [this.edgeHubId, parent.deviceId], TWIN_TOPICS);
    this.edgeLink.keepTrying = true;
  }

  laneOf(m: StoredMessage): string {
    return senderOf(m);
  }

  /**
   * The link of an identity (its lane's and its twin's). Every message goes on its sender's
   * own connection, the edge device's too (CP `routing/CloudEndpoint.cs#GetIdentity`, HC
   * `CloudEndpoint.CloudMessageProcessor`): only `$edgeHub`'s own take the hub's link.
   */
  linkFor(clientId: string): Link {
    if (clientId === this.edgeHubId) return this.edgeLink;
    let shared = this.#links.get(clientId);
    if (!shared) {
      const link = this.#link(
        clientId,
        this.#authChain(clientId),
        IDENTITY_TOPICS,
        this.#pacer,
        clientId.includes("/") ? undefined : deviceSession(clientId),
      );
      // Our own credential works, so a refusal is about the client: its identity changed upstream.
      link.on("refused", (code) => {
        // A busy parent says nothing about the identity.
        if (!busyRefusal(code) && this.edgeLink.up) this.identityRefused?.(clientId);
      });
      shared = { link, users: 0 };
      this.#links.set(clientId, shared);
    }
    shared.users++;
    return shared.link;
  }

  release(clientId: string, link: Link): void {
    if (link === this.edgeLink) return;
    const shared = this.#links.get(clientId);
    if (!shared || shared.link !== link || --shared.users > 0) return;
    this.#links.delete(clientId);
    link.close();
  }

  refusedForGood(_lane: string, refusals: number): boolean {
    // When the parent refuses this hub itself, every login fails: that is for the operator
    // to fix, and the messages wait.
    return refusals >= REFUSALS_FOR_GOOD && this.edgeLink.up;
  }

  transientRefusal(code: number): boolean {
    return busyRefusal(code);
  }

  unsendable(m: StoredMessage, queue: string): string | undefined {
    // Fast path: a message far below the limit even with every property byte escaped three
    // times over and the longest topic path (ids of 128 characters, the forwarder id).
    let rough = m.body.length + 1024;
    const props = m.properties;
    // for…in: no array per message; stored properties inherit nothing (codec.ts).
    for (const k in props) rough += 3 * (k.length + (props[k] as string).length) + 2;
    if (rough <= MAX_MESSAGE_BYTES) return undefined;
    // What IoT Hub counts: the message as sent, its properties (the topic's bag) included.
    const wire = this.wireFormOf(m, queue);
    const bytes = Buffer.byteLength(wire.topic) + wire.payload.length;
    return bytes > MAX_MESSAGE_BYTES
      ? `${bytes} bytes with its topic and properties (body ${m.body.length}) is over the parent's ${MAX_MESSAGE_BYTES}-byte message limit`
      : undefined;
  }

  wireFormOf(m: StoredMessage, queue: string): WireForm {
    const props = m.properties;
    const deviceId = props["$.cdid"];
    const moduleId = props["$.cmid"];
    // System properties first, then the application ones, a `/` after the bag (the SDK's
    // `MqttIotHubAdapter.cs#PopulateMessagePropertiesFromMessage`). The device's own `$.mid`
    // goes as it is (or not at all); toward a hub of ours the forwarder id lets it drop the
    // duplicates a resend after a link loss makes.
    let bag = "";
    for (const k of SENT_SYSTEM) {
      const v = props[k];
      if (v !== undefined && v !== "") bag += `${encodeProperty(k, v)}&`;
    }
    // for…in: no array per message; stored properties inherit nothing (codec.ts).
    for (const k in props) if (!k.startsWith("$.")) bag += `${encodeProperty(k, props[k] as string)}&`;
    if (this.forwardId !== undefined) bag += `${FORWARD_ID_KEY}=${this.forwardId(queue, m.offset)}&`;
    if (bag !== "") bag = `${bag.slice(0, -1)}/`;
    const path = moduleId === undefined ? `devices/${deviceId}` : `devices/${deviceId}/modules/${moduleId}`;
    return { topic: `${path}/messages/events/${bag}`, payload: m.body };
  }

  /** Device ids from the client's device up to this hub, each a child of the next. */
  #authChain(clientId: string): string[] {
    const deviceId = clientId.split("/")[0] as string;
    // It starts with the client itself, a module's own device next (Microsoft's
    // ServiceIdentityTree: `edge1/mod1;edge1`, `edge2/mod2;edge2;edge1`, `leaf1;edge1`).
    const chain = clientId === deviceId ? [deviceId] : [clientId, deviceId];
    let current = this.#registry.getDevice(deviceId);
    while (current && current.deviceId !== this.#parent.deviceId && chain.length < 16) {
      const parent = this.#registry
        .listDevices()
        .find(
          (d) =>
            d.capabilities.iotEdge &&
            d.deviceScope !== undefined &&
            current?.parentScopes.includes(d.deviceScope),
        );
      if (!parent) break;
      if (parent.deviceId !== this.#parent.deviceId) chain.push(parent.deviceId);
      current = parent;
    }
    if (chain.at(-1) !== this.#parent.deviceId) chain.push(this.#parent.deviceId);
    return chain;
  }

  #link(
    clientId: string,
    chain: string[],
    topics: string[] = [],
    pacer?: ConnectPacer,
    session?: LinkSession,
  ): Link {
    const p = this.#parent;
    // SDK `MqttIotHubAdapter.cs#ConnectAsync`: api-version, DeviceClientType, auth-chain, in
    // that order, each value escaped (`Uri.EscapeDataString`: the same bytes here).
    const username = `${p.hubHostname}/${clientId}/?api-version=${API_VERSION}&DeviceClientType=${encodeURIComponent(DEVICE_CLIENT_TYPE)}&auth-chain=${encodeURIComponent(chain.join(";"))}`;
    return new Link(
      clientId,
      () => {
        const token = this.#credentials.token();
        // Nothing logs in before the `$edgeHub` keys are in hand (the upstream waits for them).
        if (token === undefined) throw new Error("the $edgeHub keys are not fetched yet");
        // The token is the credential: no client certificate on these links.
        return {
          host: p.hostname,
          port: p.port,
          clientId,
          username,
          password: token,
          ...this.#credentials.tls(false),
        };
      },
      p,
      this.#log,
      topics,
      pacer,
      session,
    );
  }
}

/**
 * A child device's link keeps its session (clean session false, the C# SDK's default:
 * `MqttTransportSettings.cs#DefaultCleanSession`), so the parent keeps the C2D messages it
 * had no PUBACK for; their PUBACKs wait for the child (`c2d-relay.ts`). A session present
 * may hold filters subscribed before (methods, desired, C2D): the ones nobody listens to now
 * are unsubscribed.
 */
function deviceSession(deviceId: string): LinkSession {
  return {
    persistent: true,
    deferAcks: isC2dTopic,
    optional: () => [METHOD_CALLS, DESIRED_UPDATES, c2dFilter(deviceId)],
  };
}
