/**
 * The device side of twins over MQTT: a GET or reported PATCH becomes the status, body and
 * `$version` of the answer on `$iothub/twin/res/{status}/?$rid=…`. Errors use IoT Hub's
 * body with `errorCode`, which the device SDKs look for.
 */
import { type EdgeHubError, ErrorCodes } from "../errors.js";
import { parseJson } from "../json.js";
import type { Logger } from "../log.js";
import type { Twins } from "../twin/twins.js";

/** What the connection sends back. */
export interface TwinAnswer {
  status: number;
  body: string;
  version?: number;
}

/** An error body as IoT Hub sends it. */
function failure(status: number, errorCode: number, message: string): TwinAnswer {
  return { status, body: JSON.stringify({ errorCode, message, timestampUtc: new Date().toISOString() }) };
}

/** Answers a twin GET (`payload` ignored) or reported PATCH of `clientId`. Never rejects. */
export async function answerTwinRequest(
  twins: Twins,
  log: Logger,
  clientId: string,
  kind: "twin-get" | "twin-reported",
  payload: Buffer,
): Promise<TwinAnswer> {
  try {
    if (kind === "twin-get") return { status: 200, body: JSON.stringify(await twins.document(clientId)) };
    let patch: unknown;
    try {
      patch = parseJson(payload);
    } catch (err) {
      return failure(
        400,
        400004,
        err instanceof SyntaxError ? "reported patch is not JSON" : (err as Error).message,
      );
    }
    return { status: 204, body: "", version: await twins.patchReported(clientId, patch) };
  } catch (err) {
    const code = (err as EdgeHubError).code;
    if (code === ErrorCodes.TWIN_INVALID) return failure(400, 400004, (err as Error).message);
    log.log("error", "twin-failed", { clientId, code, reason: (err as Error).message });
    return failure(500, 500001, "twin store failed");
  }
}
