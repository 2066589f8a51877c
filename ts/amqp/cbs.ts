/**
 * The `$cbs` node: claims-based security as IoT Hub serves it. A client sends a put-token
 * request on a sender link to `$cbs` (application properties `operation: put-token`,
 * `type: servicebus.windows.net:sastoken` or `azure-devices.net:sastoken`, `name`: the
 * audience, the SAS token as a string body) and reads the answer on a receiver link from
 * `$cbs`: `status-code` and `status-description`, correlated by the request's message id
 * (azure-iot-amqp-base `amqp_cbs.js`;
 * `Azure/iotedge:edge-hub/core/src/Microsoft.Azure.Devices.Edge.Hub.Amqp/CbsNode.cs`).
 * A token for an identity the connection holds already renews it.
 */
import type { Message } from "rhea";
import type { Authenticator, Principal } from "../auth/authenticator.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";

/** Token types IoT Hub takes. */
const TOKEN_TYPES = new Set(["servicebus.windows.net:sastoken", "azure-devices.net:sastoken"]);

/** A put-token request, read. */
export interface PutToken {
  token: string;
  /** The audience, url-decoded, without an `amqps://` scheme: `{host}/devices/{d}[/modules/{m}]`. */
  audience: string;
}

/** A request that is not a put-token IoT Hub would take: answered 400. */
export class BadCbsRequest extends Error {}

/** Reads a put-token request; throws {@link BadCbsRequest} for anything else. */
export function readPutToken(m: Message): PutToken {
  const app: unknown = m.application_properties;
  if (typeof app !== "object" || app === null) throw new BadCbsRequest("no application properties");
  const get = (k: string): unknown =>
    Object.hasOwn(app, k) ? (app as Record<string, unknown>)[k] : undefined;
  const operation = get("operation");
  if (typeof operation !== "string" || operation.toLowerCase() !== "put-token")
    throw new BadCbsRequest("operation must be put-token");
  const type = get("type");
  if (typeof type !== "string" || !TOKEN_TYPES.has(type.toLowerCase()))
    throw new BadCbsRequest("type must be a SAS token type");
  const name = get("name");
  if (typeof name !== "string" || name === "") throw new BadCbsRequest("name (the audience) is missing");
  const body: unknown = m.body;
  const token = typeof body === "string" ? body : Buffer.isBuffer(body) ? body.toString("utf8") : undefined;
  if (!token) throw new BadCbsRequest("the body must be the token");
  let audience: string;
  try {
    audience = decodeURIComponent(name);
  } catch {
    throw new BadCbsRequest("the audience is not url-encoded text");
  }
  return { token, audience: audience.replace(/^amqps:\/\//i, "") };
}

/** The answer to request `m`: its message id as correlation id, IoT Hub's status properties. */
export function cbsResponse(m: Message, status: number, description: string): Message {
  const response: Message = {
    body: undefined,
    application_properties: { "status-code": status, "status-description": description },
  };
  if (m.message_id !== undefined) response.correlation_id = m.message_id;
  return response;
}

/**
 * The identity a put-token authenticates: the token checked as on MQTT or HTTPS
 * (`authenticateToken`), and put for that identity's own audience; throws an `AUTH_*` error.
 */
export function tokenLogin(authenticator: Authenticator, request: PutToken): Principal {
  const principal = authenticator.authenticateToken(request.token);
  const path = request.audience.slice(request.audience.indexOf("/"));
  const own =
    principal.moduleId === undefined
      ? `/devices/${principal.deviceId}`
      : `/devices/${principal.deviceId}/modules/${principal.moduleId}`;
  if (path !== own)
    throw new EdgeHubError(
      ErrorCodes.AUTH_WRONG_AUDIENCE,
      `the token is for ${own}, put for ${request.audience}`,
    );
  return principal;
}

/** The `device[/module]` an audience (`{host}/devices/{d}[/modules/{m}]`) names; "" for anything else. */
export function audienceIdentity(audience: string): string {
  const m = /^[^/]*\/devices\/([^/]+)(?:\/modules\/([^/]+))?$/.exec(audience);
  if (!m) return "";
  return m[2] === undefined ? (m[1] as string) : `${m[1]}/${m[2]}`;
}
