/**
 * IoT Hub's device topic space as a table of templates, and property bags
 * (`k=v&k2=v2`, url-encoded, with `$.`-prefixed system properties).
 */

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

/** Decodes a property bag; `undefined` when it is not valid url-encoding. */
export function decodePropertyBag(bag: string): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  if (bag === "") return out;
  try {
    for (const pair of bag.split("&")) {
      if (pair === "") continue;
      const eq = pair.indexOf("=");
      const k = decodeURIComponent(eq < 0 ? pair : pair.slice(0, eq));
      out[k] = eq < 0 ? "" : decodeURIComponent(pair.slice(eq + 1));
    }
  } catch {
    return undefined;
  }
  return out;
}

/** Encodes properties as a bag. */
export function encodePropertyBag(props: Record<string, string>): string {
  return Object.entries(props)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join("&");
}

/** The property bag after `…/messages/events/`; SDKs may end it with a `/`. */
function bagOf(parts: string[]): Record<string, string> | undefined {
  return decodePropertyBag(parts.join("/").replace(/\/+$/, ""));
}

function query(s: string): Record<string, string> | undefined {
  return s.startsWith("?") ? decodePropertyBag(s.slice(1)) : undefined;
}

/** Parses a topic a device published to; `undefined` for anything outside IoT Hub's space. */
export function parsePublishTopic(topic: string): PublishTopic | undefined {
  const p = topic.split("/");
  if (p[0] === "devices" && p[1]) {
    const deviceId = p[1];
    if (p[2] === "messages" && p[3] === "events") {
      const properties = bagOf(p.slice(4));
      return properties && { kind: "telemetry", deviceId, properties };
    }
    if (p[2] === "modules" && p[3] && p[4] === "messages" && p[5] === "events") {
      const properties = bagOf(p.slice(6));
      return properties && { kind: "telemetry", deviceId, moduleId: p[3], properties };
    }
    return undefined;
  }
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
  const p = filter.split("/");
  if (p[0] === "devices" && p[1]) {
    if (p.length === 5 && p[2] === "messages" && p[3] === "devicebound" && p[4] === "#") {
      return { kind: "c2d", deviceId: p[1] };
    }
    if (p.length === 6 && p[2] === "modules" && p[3] && p[4] === "inputs" && p[5] === "#") {
      return { kind: "module-inputs", deviceId: p[1], moduleId: p[3] };
    }
    return undefined;
  }
  if (filter === "$iothub/twin/res/#") return { kind: "twin-responses" };
  if (filter === "$iothub/twin/PATCH/properties/desired/#") return { kind: "twin-desired" };
  if (filter === "$iothub/methods/POST/#") return { kind: "methods" };
  return undefined;
}
