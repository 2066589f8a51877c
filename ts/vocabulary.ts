/**
 * The hub's names, in one place: its store queues and the stored properties that steer
 * them, and IoT Hub's MQTT topics as a table of templates that both format and parse.
 * Every folder may import this (it imports nothing of them), so no two folders import
 * each other for a name.
 */
import { EdgeHubError, ErrorCodes } from "./errors.js";
import { record } from "./json.js";

// ---- Store queues ---------------------------------------------------------------------

/** Upstream-bound messages of a hub with a parent (routes `INTO $upstream`). */
export const UPSTREAM_QUEUE = "$upstream";
/** Device-to-cloud messages of a root hub (it plays the cloud, served at `GET /messages/events`). */
export const EVENTS_QUEUE = "$events";
/** Messages the parent refused for good, with {@link DEAD_LETTER} properties saying why. */
export const DEAD_LETTER_QUEUE = "$deadletter";
/** Reported-property patches written offline, sent to the parent in order. */
export const TWIN_REPORTED_QUEUE = "$twin-reported";

/** Priorities a route may give: 0 (highest) to 9; a queue without one ranks {@link PRIORITIES}. */
export const PRIORITIES = 10;

/**
 * The queue of messages of `priority` (0 highest … 9) beside `base` (upstream, a device, a
 * module); routes without one use the base queue, drained after them (as IoT Edge, where
 * a route without a priority has the lowest).
 */
export function priorityQueue(base: string, priority: number): string {
  return `${base}/p${priority}`;
}

/**
 * The base delivery queue of a client id (`deviceId` or `deviceId/moduleId`):
 * cloud-to-device messages and `DeviceEndpoint` routes go to `$c2d/{device}`,
 * `BrokeredEndpoint` routes to `$inputs/{device}/{module}`.
 */
export function deliveryQueue(clientId: string): string {
  return clientId.includes("/") ? `$inputs/${clientId}` : `$c2d/${clientId}`;
}

/**
 * Every upstream-bound queue of a hub with a parent, in drain order: one per priority (0
 * first), then {@link UPSTREAM_QUEUE} itself (routes without a priority).
 */
export const UPSTREAM_QUEUES: readonly string[] = Object.freeze([
  ...Array.from({ length: PRIORITIES }, (_, p) => priorityQueue(UPSTREAM_QUEUE, p)),
  UPSTREAM_QUEUE,
]);

/** A delivery queue's client and its place in the drain order (0 first, {@link PRIORITIES} for the base). */
export interface QueueOwner {
  clientId: string;
  rank: number;
}

/** Whose delivery queue `queue` is (see {@link deliveryQueue}); undefined for any other queue. */
export function ownerOf(queue: string): QueueOwner | undefined {
  let rest: string;
  let segments: number;
  if (queue.startsWith("$inputs/")) {
    rest = queue.slice(8);
    segments = 2;
  } else if (queue.startsWith("$c2d/")) {
    rest = queue.slice(5);
    segments = 1;
  } else return undefined;
  // Device and module ids hold no "/": a further segment is the priority.
  const parts = rest.split("/");
  if (parts.length === segments) return { clientId: rest, rank: PRIORITIES };
  const p = parts[segments];
  if (parts.length !== segments + 1 || p === undefined || !/^p[0-9]$/.test(p)) return undefined;
  return { clientId: parts.slice(0, segments).join("/"), rank: Number(p.slice(1)) };
}

/** The rank of a queue of `base`'s family: its priority, or {@link PRIORITIES} for `base` itself. */
export function rankOf(queue: string): number {
  const m = /\/p([0-9])$/.exec(queue);
  return m ? Number(m[1]) : PRIORITIES;
}

// ---- Stored properties ------------------------------------------------------------------

/** Stored with a module-input message: the input's name (it goes in the topic, not the bag). */
export const INPUT_PROPERTY = "$.in";
/**
 * A forwarded message's id given by the hub that forwarded it (hub, store incarnation,
 * queue, offset): the parent drops a resend of the same stored message by it, never a
 * distinct message with a reused `$.mid`.
 */
export const FORWARD_ID = "$.fid";
/** Properties of a dead-lettered message: why, from which queue, at which offset. */
export const DEAD_LETTER = { reason: "$.dlr", queue: "$.dlq", offset: "$.dlo" } as const;

// ---- IoT Hub's topics -------------------------------------------------------------------

/**
 * A topic template: literal text with `{name}` holes. A hole is one topic level (no `/`,
 * not empty) except the last hole of a template that ends with it, which takes the rest
 * (a property bag or a query, possibly empty). Formatting checks the values the same way,
 * so an id holding a `/` can never make another topic.
 */
export class TopicTemplate<K extends string> {
  readonly text: string;
  /** Literal parts; `holes[i]` follows `literals[i]`. */
  readonly #literals: string[] = [];
  readonly #holes: K[] = [];
  readonly #restLast: boolean;

  constructor(text: string) {
    this.text = text;
    let at = 0;
    for (const m of text.matchAll(/\{([A-Za-z]+)\}/g)) {
      this.#literals.push(text.slice(at, m.index));
      this.#holes.push(m[1] as K);
      at = m.index + m[0].length;
    }
    this.#literals.push(text.slice(at));
    this.#restLast = this.#holes.length > 0 && at === text.length;
  }

  /** The topic for `values`; throws INVALID_ARGUMENT for a value that would change the topic's levels. */
  format(values: Record<K, string>): string {
    let out = this.#literals[0] as string;
    for (let i = 0; i < this.#holes.length; i++) {
      const name = this.#holes[i] as K;
      const v = values[name];
      const rest = this.#restLast && i === this.#holes.length - 1;
      if (!rest && (v === "" || v.includes("/")))
        throw new EdgeHubError(
          ErrorCodes.INVALID_ARGUMENT,
          `${name} ${JSON.stringify(v)} is not one topic level`,
        );
      out += v + (this.#literals[i + 1] as string);
    }
    return out;
  }

  /** The holes' values when `topic` has this form; undefined otherwise. */
  parse(topic: string): Record<K, string> | undefined {
    const first = this.#literals[0] as string;
    if (!topic.startsWith(first)) return undefined;
    if (this.#holes.length === 0) return topic === first ? record<string>() : undefined;
    const out = record<string>();
    let at = first.length;
    for (let i = 0; i < this.#holes.length; i++) {
      const after = this.#literals[i + 1] as string;
      if (this.#restLast && i === this.#holes.length - 1) {
        out[this.#holes[i] as string] = topic.slice(at);
        return out as Record<K, string>;
      }
      const end = after === "" ? topic.length : topic.indexOf(after, at);
      if (end <= at) return undefined;
      const v = topic.slice(at, end);
      if (v.includes("/")) return undefined;
      out[this.#holes[i] as string] = v;
      at = end + after.length;
    }
    return at === topic.length ? (out as Record<K, string>) : undefined;
  }
}

/**
 * IoT Hub's device-side MQTT topics, as the official SDKs use them (azure-iot-device-mqtt
 * `mqtt_base`/`mqtt.js`, `Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Mqtt/
 * MqttTopicsTranslation`); `bag` is a url-encoded property bag, `query` the `$rid=…` tail.
 */
export const TOPICS = {
  telemetry: new TopicTemplate<"deviceId" | "bag">("devices/{deviceId}/messages/events/{bag}"),
  moduleTelemetry: new TopicTemplate<"deviceId" | "moduleId" | "bag">(
    "devices/{deviceId}/modules/{moduleId}/messages/events/{bag}",
  ),
  c2d: new TopicTemplate<"deviceId" | "bag">("devices/{deviceId}/messages/devicebound/{bag}"),
  c2dFilter: new TopicTemplate<"deviceId">("devices/{deviceId}/messages/devicebound/#"),
  moduleInput: new TopicTemplate<"deviceId" | "moduleId" | "input" | "bag">(
    "devices/{deviceId}/modules/{moduleId}/inputs/{input}/{bag}",
  ),
  moduleInputsFilter: new TopicTemplate<"deviceId" | "moduleId">(
    "devices/{deviceId}/modules/{moduleId}/inputs/#",
  ),
  twinResponsesFilter: new TopicTemplate<never>("$iothub/twin/res/#"),
  twinResponse: new TopicTemplate<"status" | "query">("$iothub/twin/res/{status}/?{query}"),
  twinGet: new TopicTemplate<"query">("$iothub/twin/GET/?{query}"),
  twinReported: new TopicTemplate<"query">("$iothub/twin/PATCH/properties/reported/?{query}"),
  twinDesiredFilter: new TopicTemplate<never>("$iothub/twin/PATCH/properties/desired/#"),
  twinDesired: new TopicTemplate<"query">("$iothub/twin/PATCH/properties/desired/?{query}"),
  methodsFilter: new TopicTemplate<never>("$iothub/methods/POST/#"),
  methodRequest: new TopicTemplate<"name" | "query">("$iothub/methods/POST/{name}/?{query}"),
  methodResponse: new TopicTemplate<"status" | "query">("$iothub/methods/res/{status}/?{query}"),
} as const;

// ---- IoT Hub's AMQP addresses ------------------------------------------------------------

/**
 * IoT Hub's device-side AMQP link addresses, as the official SDKs attach them
 * (azure-iot-common `endpoint.js`, used by azure-iot-device-amqp `amqp.js`;
 * `Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Amqp/Templates.cs`).
 * A module's events address serves both ways: it sends its outputs on it and receives its
 * inputs from it.
 */
export const ADDRESSES = {
  cbs: "$cbs",
  /** The service side's sender of cloud-to-device messages (azure-iothub `amqp.js`). */
  serviceC2d: "/messages/devicebound",
  /** The service side's receiver of C2D feedback (the SDK writes `serviceBound`; IoT Hub takes any case). */
  serviceFeedback: "/messages/servicebound/feedback",
  telemetry: new TopicTemplate<"deviceId">("/devices/{deviceId}/messages/events"),
  moduleEvents: new TopicTemplate<"deviceId" | "moduleId">(
    "/devices/{deviceId}/modules/{moduleId}/messages/events",
  ),
  c2d: new TopicTemplate<"deviceId">("/devices/{deviceId}/messages/devicebound"),
  twin: new TopicTemplate<"deviceId">("/devices/{deviceId}/twin"),
  moduleTwin: new TopicTemplate<"deviceId" | "moduleId">("/devices/{deviceId}/modules/{moduleId}/twin"),
  methods: new TopicTemplate<"deviceId">("/devices/{deviceId}/methods/devicebound"),
  moduleMethods: new TopicTemplate<"deviceId" | "moduleId">(
    "/devices/{deviceId}/modules/{moduleId}/methods/devicebound",
  ),
  /** An Event Hubs reader of a root's events (@azure/event-hubs `getReceiverAddress`; ts/amqp/event-hub). */
  eventHubPartition: new TopicTemplate<"hub" | "group" | "partition">(
    "{hub}/ConsumerGroups/{group}/Partitions/{partition}",
  ),
} as const;
