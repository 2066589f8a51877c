/** HTTP plumbing of the service API: bodies with limits, JSON replies, IoT Hub error bodies. */
import type { IncomingMessage, ServerResponse } from "node:http";
import { EdgeHubError, type ErrorCode, ErrorCodes } from "../errors.js";
import { parseJson } from "../json.js";

/** An error the API answers with an HTTP status and IoT Hub's `ErrorCode:` text. */
export class ApiError extends Error {
  /**
   * @param detail what the hub logs and never answers (why a caller was refused).
   * @param authCode for a 401 or 403: the `AUTH_*` code it is counted under in the metrics.
   */
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
    readonly detail?: string,
    readonly authCode?: ErrorCode,
  ) {
    super(message);
  }
}

/**
 * The service API's one 401, whatever failed (no token, a bad signature, an unknown
 * identity, an expired token), so callers cannot learn which ids exist; `detail` (with
 * the `AUTH_*` code where there is one) goes to the hub's log only, `code` to the
 * metrics. IoT Hub's answer: `ErrorCode:IotHubUnauthorizedAccess;Unauthorized`.
 */
export function unauthorized(detail: string, code: ErrorCode): ApiError {
  return new ApiError(401, "IotHubUnauthorizedAccess", "Unauthorized", detail, code);
}

/** {@link unauthorized} for a token or certificate check that threw: its code, else `AUTH_BAD_TOKEN`. */
export function unauthorizedBy(err: unknown): ApiError {
  return err instanceof EdgeHubError
    ? unauthorized(`${err.code}: ${err.message}`, err.code)
    : unauthorized((err as Error).message, ErrorCodes.AUTH_BAD_TOKEN);
}

/** Reads the whole body, refusing more than `limit` bytes with 413. */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new ApiError(413, "MessageTooLarge", `request body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Parses a JSON body into null-prototype objects; 400 when it is not JSON (or nests too deep). */
export async function readJson(req: IncomingMessage, limit = 1 << 20): Promise<unknown> {
  const body = await readBody(req, limit);
  if (body.length === 0) return undefined;
  try {
    return parseJson(body);
  } catch {
    throw new ApiError(400, "ArgumentInvalid", "request body is not valid JSON");
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: ApiError): void {
  sendJson(res, err.status, {
    Message: `ErrorCode:${err.errorCode};${err.message}`,
    ExceptionMessage: `Tracking ID:${Date.now().toString(16)}-G:0-TimeStamp:${new Date().toISOString()}`,
  });
}
