/**
 * IoT Hub's bulk registry call, `POST /devices` with up to 100 `ExportImportDevice`
 * entries (`id`, `eTag`, `importMode`, device fields), what the service SDKs'
 * `addDevices/updateDevices/removeDevices` send. As IoT Hub: each identity succeeds or
 * fails on its own (no all-or-nothing), failures come back per identity in a
 * `BulkRegistryOperationResult` `{isSuccessful, errors:[{deviceId, errorCode, errorStatus}],
 * warnings}`, answered with 200 when every one succeeded and 400 otherwise. A request
 * that is malformed as a whole (not a list, empty, over 100, an id twice, an unknown
 * mode) changes nothing and is refused with 400.
 */
import type { Device, Registry } from "../auth/registry.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";
import { bareEtag } from "./etag.js";
import { ApiError } from "./http.js";

/** Identities per call, IoT Hub's limit. */
export const MAX_BULK = 100;

/** The import modes of IoT Hub's `ExportImportDevice`, lower-cased (the SDKs send `create`, `Update`, …). */
const MODES = new Set([
  "create",
  "update",
  "updateifmatchetag",
  "createorupdate",
  "createorupdateifmatchetag",
  "delete",
  "deleteifmatchetag",
]);

/** One identity's failure, as IoT Hub reports it. */
export interface BulkError {
  deviceId: string;
  errorCode: string;
  errorStatus: string;
}

/** The answer of a bulk call. */
export interface BulkResult {
  isSuccessful: boolean;
  errors: BulkError[];
  warnings: never[];
}

interface Entry {
  id: string;
  mode: string;
  etag: string | undefined;
  spec: Partial<Device>;
}

/** Checks the request as a whole; nothing is applied unless every entry is well formed. */
function entriesOf(body: unknown): Entry[] {
  if (!Array.isArray(body) || body.length === 0 || body.length > MAX_BULK) {
    throw new ApiError(400, "ArgumentInvalid", `the body must be a list of 1 to ${MAX_BULK} devices`);
  }
  const seen = new Set<string>();
  return body.map((raw: unknown) => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new ApiError(400, "ArgumentInvalid", "every entry must be an object");
    const e = raw as Record<string, unknown>;
    const id = e.id;
    if (typeof id !== "string" || id === "")
      throw new ApiError(400, "ArgumentInvalid", "every entry needs an id");
    if (seen.has(id)) throw new ApiError(400, "ArgumentInvalid", `device ${id} appears more than once`);
    seen.add(id);
    if (e.moduleId !== undefined && e.moduleId !== null)
      throw new ApiError(400, "ArgumentInvalid", "the bulk call takes devices, not modules");
    const mode = typeof e.importMode === "string" ? e.importMode.toLowerCase() : "";
    if (!MODES.has(mode))
      throw new ApiError(400, "ArgumentInvalid", `importMode of ${id} is not one this hub supports`);
    // IoT Hub names it `eTag` but reads names case-insensitively; the Node SDK sends the device's `etag`.
    const given = e.eTag ?? e.etag;
    const etag = typeof given === "string" ? bareEtag(given) : undefined;
    const spec: Partial<Device> = {};
    for (const key of [
      "status",
      "statusReason",
      "authentication",
      "capabilities",
      "deviceScope",
      "parentScopes",
    ]) {
      if (e[key] !== undefined && e[key] !== null) (spec as Record<string, unknown>)[key] = e[key];
    }
    return { id, mode, etag, spec };
  });
}

function failure(deviceId: string, err: unknown): BulkError {
  if (err instanceof EdgeHubError) {
    const code =
      err.code === ErrorCodes.IDENTITY_EXISTS
        ? "DeviceAlreadyExists"
        : err.code === ErrorCodes.IDENTITY_NOT_FOUND
          ? "DeviceNotFound"
          : err.code === ErrorCodes.INVALID_ARGUMENT
            ? "ArgumentInvalid"
            : "ServerError";
    return { deviceId, errorCode: code, errorStatus: err.message };
  }
  if (err instanceof ApiError) return { deviceId, errorCode: err.errorCode, errorStatus: err.message };
  return { deviceId, errorCode: "ServerError", errorStatus: "internal error" };
}

/**
 * Applies a bulk request to `registry`; `remove` deletes a device and everything of it
 * (the same path as `DELETE /devices/{id}`).
 */
export async function applyBulk(
  registry: Registry,
  body: unknown,
  remove: (deviceId: string) => Promise<void>,
): Promise<BulkResult> {
  const errors: BulkError[] = [];
  for (const { id, mode, etag, spec } of entriesOf(body)) {
    try {
      const current = registry.getDevice(id);
      if (mode.endsWith("ifmatchetag") && current && (etag === undefined || etag !== current.etag)) {
        throw new ApiError(412, "PreconditionFailed", `device ${id} changed since etag ${etag ?? "(none)"}`);
      }
      if (mode === "delete" || mode === "deleteifmatchetag") {
        if (!current) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${id} not found`);
        await remove(id);
      } else if (mode === "create" || (mode.startsWith("createorupdate") && !current)) {
        await registry.createDevice({ ...spec, deviceId: id });
      } else {
        if (!current) throw new EdgeHubError(ErrorCodes.IDENTITY_NOT_FOUND, `device ${id} not found`);
        await registry.updateDevice({ ...spec, deviceId: id });
      }
    } catch (err) {
      errors.push(failure(id, err));
    }
  }
  return { isSuccessful: errors.length === 0, errors, warnings: [] };
}
