/**
 * edgehub: an edge hub that keeps IoT devices working when the gateway loses its uplink.
 * @packageDocumentation
 */
export { EdgeHubError, type ErrorCode, ErrorCodes } from "./errors.js";
export * from "./store/index.js";
