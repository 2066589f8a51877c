/**
 * Parses IoT Hub's device topic space (the templates are ../vocabulary.ts's `TOPICS`; telemetry,
 * parsed per message, is read by hand without splitting), and property bags
 * (`k=v&k2=v2`, url-encoded, with `$.`-prefixed system properties).
 */
import type { Outgoing } from "../delivery/device-delivery.js";
import { record } from "../json.js";
import { TOPICS } from "../vocabulary.js";

/** What a device may publish to. */
export type PublishTopic =
  | { kind: "telemetry"; deviceId: string; moduleId?: string; properties: Record<string, string> }
  | { kind: "twin-get"; rid: string }
  | { kind: "twin-reported"; rid: string }
  | { kind: "method-response"; status: number; rid: string };

/** What a device may subscribe to. */
export type SubscribeTopic =
  | { kind: "c2d"; deviceId: string }
  | { kind: "module-inputs"; deviceId: string; moduleId: string }
  | { kind: "twin-responses" }
  | { kind: "twin-desired" }
  | { kind: "methods" };

/** `decodeURIComponent`, skipped for the common text with nothing escaped. */
function decode(s: string): string {
  return s.includes("%") ? decodeURIComponent(s) : s;
}

/**
 * Decodes a property bag into a null-prototype record (so `__proto__=x` is a property like
 * any other); `undefined` when it is not valid url-encoding.
 */
export function decodePropertyBag(bag: string): Record<string, string> | undefined {
  const out = record<string>();
  if (bag === "") return out;
  try {
    for (const pair of bag.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const k = decode(eq < 0 ? pair : pair.slice(0, eq));
      out[k] = eq < 0 ? "" : decode(pair.slice(eq + 1));
    }
  } catch {
    return undefined;
  }
  return out;
}

/** Encodes the own properties of `props` as a bag. */
export function encodePropertyBag(props: Record<string, string>, skip?: (key: string) => boolean): string {
  let out = "";
  for (const k of Object.keys(props)) {
    if (skip?.(k)) continue;
    out += `${out === "" ? "" : "&"}${encodeProperty(k, props[k] as string)}`;
  }
  return out;
}

/** One `key=value` pair of a property bag, escaped. */
export function encodeProperty(key: string, value: string): string {
  return `${encode(key)}=${encode(value)}`;
}

/** `encodeURIComponent`, skipped for the common text that needs no escapes. */
function encode(s: string): string {
  return /^[A-Za-z0-9_.!~*'()-]*$/.test(s) ? s : encodeURIComponent(s);
}

const EVENTS = "/messages/events";

/**
 * The property bag of a telemetry topic's tail (what follows `…/messages/events`);
 * SDKs may end it with a `/`. `undefined` when the tail is not a bag.
 */
function bagOf(topic: string, at: number): Record<string, string> | undefined {
  if (at === topic.length) return record();
  if (topic[at] !== "/") return undefined;
  let end = topic.length;
  while (end > at && topic[end - 1] === "/") end--;
  return decodePropertyBag(topic.slice(at + 1, end));
}

/**
 * Telemetry topics, the ones parsed per message: `devices/{d}/messages/events…` and
 * `devices/{d}/modules/{m}/messages/events…`, read without splitting the topic.
 */
function parseTelemetryTopic(topic: string): PublishTopic | undefined {
  const d = topic.indexOf("/", 8);
  if (d <= 8) return undefined;
  const deviceId = topic.slice(8, d);
  if (topic.startsWith(EVENTS, d)) {
    const properties = bagOf(topic, d + EVENTS.length);
    return properties && { kind: "telemetry", deviceId, properties };
  }
  if (!topic.startsWith("/modules/", d)) return undefined;
  const m = topic.indexOf("/", d + 9);
  if (m <= d + 9 || !topic.startsWith(EVENTS, m)) return undefined;
  const properties = bagOf(topic, m + EVENTS.length);
  return properties && { kind: "telemetry", deviceId, moduleId: topic.slice(d + 9, m), properties };
}

function query(s: string): Record<string, string> | undefined {
  return s.startsWith("?") ? decodePropertyBag(s.slice(1)) : undefined;
}

/** Parses a topic a device published to; `undefined` for anything outside IoT Hub's space. */
export function parsePublishTopic(topic: string): PublishTopic | undefined {
  if (topic.startsWith("devices/")) return parseTelemetryTopic(topic);
  const p = topic.split("/");
  if (p[0] !== "$iothub") return undefined;
  const q = query(p.at(-1) ?? "");
  const rid = q?.$rid;
  if (rid === undefined) return undefined;
  if (p.length === 4 && p[1] === "twin" && p[2] === "GET") return { kind: "twin-get", rid };
  if (p.length === 6 && p[1] === "twin" && p[2] === "PATCH" && p[3] === "properties" && p[4] === "reported") {
    return { kind: "twin-reported", rid };
  }
  if (p.length === 5 && p[1] === "methods" && p[2] === "res" && /^\d{3}$/.test(p[3] ?? "")) {
    return { kind: "method-response", status: Number(p[3]), rid };
  }
  return undefined;
}

/** Parses a subscription filter; `undefined` for anything outside IoT Hub's space. */
export function parseSubscribeTopic(filter: string): SubscribeTopic | undefined {
  const c2d = TOPICS.c2dFilter.parse(filter);
  if (c2d) return { kind: "c2d", deviceId: c2d.deviceId };
  const inputs = TOPICS.moduleInputsFilter.parse(filter);
  if (inputs) return { kind: "module-inputs", deviceId: inputs.deviceId, moduleId: inputs.moduleId };
  if (TOPICS.twinResponsesFilter.parse(filter)) return { kind: "twin-responses" };
  if (TOPICS.twinDesiredFilter.parse(filter)) return { kind: "twin-desired" };
  if (TOPICS.methodsFilter.parse(filter)) return { kind: "methods" };
  return undefined;
}

/** The topic a C2D message or a module input goes out on, its properties as the bag. */
export function deliveryTopic(m: Outgoing): string {
  const bag = encodePropertyBag(m.properties);
  return m.moduleId === undefined
    ? TOPICS.c2d.format({ deviceId: m.deviceId, bag })
    : TOPICS.moduleInput.format({
        deviceId: m.deviceId,
        moduleId: m.moduleId,
        input: m.input ?? "input1",
        bag,
      });
}
