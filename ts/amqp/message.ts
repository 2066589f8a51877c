/**
 * AMQP messages to and from the hub's stored form: the body as bytes, the properties as one
 * null-prototype record of strings with IoT Hub's system properties under the same `$.` keys
 * the MQTT head's property bags use, so a message is stored, routed and forwarded the same
 * whichever head took it. Mapping as Microsoft's edge hub does it
 * (`Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Amqp/AmqpMessageConverter.cs`)
 * and the Node SDK sends it (azure-iot-amqp-base `amqp_message.js`).
 */
import rhea, { type Message } from "rhea";
import type { Outgoing } from "../delivery/device-delivery.js";
import { record } from "../json.js";
import type { StoredMessage } from "../store/index.js";
import { keepProtoKeys } from "./rhea-maps.js";

keepProtoKeys();

/** Message properties (the AMQP `properties` section) and their `$.` keys. */
const SYSTEM = [
  ["message_id", "$.mid"],
  ["correlation_id", "$.cid"],
  ["content_type", "$.ct"],
  ["content_encoding", "$.ce"],
  ["to", "$.to"],
] as const satisfies ReadonlyArray<readonly [keyof Message, string]>;

/** Application properties IoT Hub reads as system properties. */
const SYSTEM_APPLICATION: ReadonlyMap<string, string> = new Map([
  ["iothub-outputname", "$.on"],
  ["iothub-creation-time-utc", "$.ctime"],
  ["iothub-message-schema", "$.schema"],
]);

/** The annotation carrying a module input's name (azure-iot-device-amqp `amqp.js`). */
export const INPUT_NAME_ANNOTATION = "x-opt-input-name";

/** An id as IoT Hub writes it: a 16-byte uuid as its text, a string or number as it is. */
function idText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (Buffer.isBuffer(v)) return v.length === 16 ? rhea.uuid_to_string(v) : v.toString("utf8");
  return undefined;
}

/** A message that cannot be stored as it came. */
export class UnsupportedMessage extends Error {}

/** The body bytes: data sections as they are, a string or binary value section as its bytes. */
function bodyOf(m: Message): Buffer {
  const body: unknown = m.body;
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (typeof body === "string") return Buffer.from(body, "utf8");
  if (Buffer.isBuffer(body)) return body;
  const section = body as { typecode?: number; content?: unknown; multiple?: boolean };
  if (section.typecode === 0x75) {
    if (Buffer.isBuffer(section.content)) return section.content;
    if (
      section.multiple &&
      Array.isArray(section.content) &&
      section.content.every((c) => Buffer.isBuffer(c))
    )
      return Buffer.concat(section.content as Buffer[]);
  }
  throw new UnsupportedMessage("the body must be data sections, or a string or binary value");
}

/**
 * The stored form of a device's message: body bytes, and its properties with the system
 * ones under `$.` keys. Application property values that are not text are written as text
 * (numbers, booleans); others (maps, lists, binary) are refused, as the MQTT head's bag
 * carries only text.
 */
export function fromAmqp(m: Message): { body: Buffer; properties: Record<string, string> } {
  const properties = record<string>();
  const app: unknown = m.application_properties;
  if (app !== undefined && app !== null) {
    if (typeof app !== "object") throw new UnsupportedMessage("application properties must be a map");
    const map = app as Record<string, unknown>;
    for (const key of Object.keys(map)) {
      const v = map[key];
      let text: string;
      if (typeof v === "string") text = v;
      else if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") text = String(v);
      else throw new UnsupportedMessage(`application property ${JSON.stringify(key)} is not text`);
      // The hubs' own keys (`$.cdid`, `$.fid`, …) are never a client's to set.
      if (key.startsWith("$.")) continue;
      properties[SYSTEM_APPLICATION.get(key) ?? key] = text;
    }
  }
  for (const [field, key] of SYSTEM) {
    const v = idText(m[field]);
    if (v !== undefined && v !== "") properties[key] = v;
  }
  // Binary on the wire (rhea's type says string).
  const uid: unknown = m.user_id;
  if (Buffer.isBuffer(uid) && uid.length > 0) properties["$.uid"] = uid.toString("utf8");
  else if (typeof uid === "string" && uid !== "") properties["$.uid"] = uid;
  if (m.absolute_expiry_time instanceof Date && !Number.isNaN(m.absolute_expiry_time.getTime()))
    properties["$.exp"] = m.absolute_expiry_time.toISOString();
  return { body: bodyOf(m), properties };
}

/** The AMQP message of a C2D message or module input (its body one data section). */
export function toAmqp(o: Pick<Outgoing, "properties" | "body" | "input">): Message {
  const p = o.properties;
  const m: Message = { body: rhea.message.data_section(o.body) };
  const app = record<string>();
  for (const key of Object.keys(p)) {
    const v = p[key] as string;
    switch (key) {
      case "$.mid":
        m.message_id = v;
        break;
      case "$.cid":
        m.correlation_id = v;
        break;
      case "$.ct":
        m.content_type = v;
        break;
      case "$.ce":
        m.content_encoding = v;
        break;
      case "$.to":
        m.to = v;
        break;
      case "$.uid":
        m.user_id = v;
        break;
      case "$.exp": {
        const at = new Date(v);
        if (!Number.isNaN(at.getTime())) m.absolute_expiry_time = at;
        break;
      }
      default:
        // Other `$.` keys are the hubs' own (sender identity, forwarder id): not sent.
        if (!key.startsWith("$.")) app[key] = v;
    }
  }
  m.application_properties = app;
  if (o.input !== undefined) m.message_annotations = { [INPUT_NAME_ANNOTATION]: o.input };
  return m;
}

/**
 * A device-to-cloud message as IoT Hub's Event Hubs–compatible endpoint gives it: the body
 * and properties as {@link toAmqp} maps them (what the device sent), and the annotations IoT
 * Hub adds (https://learn.microsoft.com/azure/iot-hub/iot-hub-devguide-messages-construct):
 * who sent it, when it was enqueued, and its place in the partition (`x-opt-sequence-number`
 * and `x-opt-offset`: the store offset; `x-opt-enqueued-time`: when it was stored).
 */
export function eventToAmqp(m: StoredMessage): Message {
  const out = toAmqp(m);
  const enqueued = new Date(m.enqueuedAt);
  const annotations: Record<string, unknown> = {
    "x-opt-sequence-number": rhea.types.wrap_long(m.offset),
    "x-opt-offset": String(m.offset),
    "x-opt-enqueued-time": enqueued,
    "iothub-enqueuedtime": enqueued,
    "iothub-message-source": "Telemetry",
  };
  const device = m.properties["$.cdid"];
  const module = m.properties["$.cmid"];
  if (device !== undefined) annotations["iothub-connection-device-id"] = device;
  if (module !== undefined) annotations["iothub-connection-module-id"] = module;
  out.message_annotations = annotations;
  return out;
}
