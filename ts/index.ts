/**
 * edgehub: an edge hub that keeps IoT devices working when the gateway loses its uplink.
 * @packageDocumentation
 */

export {
  type Authentication,
  type Device,
  type IdentityStatus,
  type Module,
  Registry,
} from "./auth/registry.js";
export type { HubConfigInput, ParentConfigInput } from "./config/config.js";
export { DeviceDelivery, type DeviceMessage } from "./delivery/device-delivery.js";
export { EdgeHubError, type ErrorCode, ErrorCodes } from "./errors.js";
export { EdgeHub } from "./hub.js";
export { consoleLogger, type Logger, type LogLevel, silentLogger } from "./log.js";
export { DirectMethods, type MethodCall, type MethodResult } from "./methods/direct-methods.js";
export * from "./store/index.js";
export { type Twin, type TwinProperties, Twins } from "./twin/twins.js";
export { Forwarder, type ForwarderStats } from "./upstream/forwarder.js";
export { Upstream } from "./upstream/upstream.js";
export {
  DEAD_LETTER_QUEUE,
  EVENTS_QUEUE,
  PRIORITIES,
  TOPICS,
  TopicTemplate,
  TWIN_REPORTED_QUEUE,
  UPSTREAM_QUEUE,
} from "./vocabulary.js";
