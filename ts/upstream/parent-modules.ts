/**
 * Module identity writes a child edge's identity service makes on this hub (its local
 * gateway), forwarded to the parent: `PUT`/`DELETE /devices/{d}/modules/{m}?api-version=2017-11-08-preview`
 * as Azure/iot-identity-service `identity/aziot-hub-client-async/src/lib.rs#Client::create_module`,
 * `#update_module` and `#delete_module` send them, signed with this hub's `$edgeHub` token on
 * the child's behalf (ts/service/module-identity.ts checked the child's own credential
 * first). Not retried, as the identity service's client does not retry; a parent out of
 * reach is a 503 the caller can try again. A write that went through is followed by a scope
 * sync, so the cache that answers reads here has it.
 */
import type { ParentConfig } from "../config/config.js";
import type { Logger } from "../log.js";
import { ApiError } from "../service/http.js";
import type { ModuleWrite, ModuleWrites } from "../service/module-identity.js";
import type { ParentCredentials } from "./credentials.js";
import { parentEndpoint, ScopeCallError, scopeCall } from "./scope-http.js";
import type { ScopeSync } from "./scope-sync.js";

/** api-version of the identity service's calls (`aziot-hub-client-async`). */
const MODULE_API = "2017-11-08-preview";

/** The parent's `ErrorCode:` from its error body, if it has IoT Hub's shape. */
function errorCodeOf(message: string): string {
  return /ErrorCode:([A-Za-z]{1,64});/.exec(message)?.[1] ?? "ParentRefused";
}

/** Forwards a device's module writes to the parent. */
export class ParentModules implements ModuleWrites {
  readonly #parent: ParentConfig;
  readonly #credentials: ParentCredentials;
  readonly #scope: ScopeSync;
  readonly #log: Logger;

  constructor(parent: ParentConfig, credentials: ParentCredentials, scope: ScopeSync, log: Logger) {
    this.#parent = parent;
    this.#credentials = credentials;
    this.#scope = scope;
    this.#log = log;
  }

  async write(w: ModuleWrite): Promise<unknown> {
    const path = `/devices/${encodeURIComponent(w.deviceId)}/modules/${encodeURIComponent(w.moduleId)}?api-version=${MODULE_API}`;
    let answer: unknown;
    try {
      answer = await scopeCall(parentEndpoint(this.#parent, this.#credentials), {
        method: w.method,
        path,
        token: await this.#credentials.token(),
        ...(w.body === undefined ? {} : { body: JSON.stringify(w.body) }),
        // The identity service sends `*`; a bare etag goes back quoted, as the SDKs send it.
        ...(w.ifMatch === undefined
          ? {}
          : { headers: { "If-Match": w.ifMatch === "*" ? "*" : `"${w.ifMatch}"` } }),
      });
    } catch (err) {
      const e = err as Error;
      this.#log.log("warn", "module-write-forward-failed", {
        deviceId: w.deviceId,
        moduleId: w.moduleId,
        method: w.method,
        reason: e.message.slice(0, 200),
      });
      if (err instanceof ScopeCallError && err.status !== undefined && err.status >= 400 && err.status < 500)
        throw new ApiError(
          err.status,
          errorCodeOf(e.message),
          `the parent refused it: ${e.message.slice(0, 200)}`,
        );
      throw new ApiError(
        503,
        "ServiceUnavailable",
        "the parent hub is unreachable; module identity writes go to it, try again when it is back",
      );
    }
    // The cache answers this device's reads: it has the change before the caller reads it.
    await this.#scope.resync();
    return answer;
  }
}
