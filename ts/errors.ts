/**
 * The catalogue of edgehub error codes. Every error edgehub throws carries one of these
 * as `err.code`; each is documented in `docs/errors.md`, and a retired code is never
 * reused.
 */
export const ErrorCodes = {
  /** The store was closed; open it again. */
  STORE_CLOSED: "STORE_CLOSED",
  /** An append would exceed `maxSizeBytes` under the `reject` policy; nothing was written. */
  STORE_FULL: "STORE_FULL",
  /** A caller passed a value the operation cannot accept. */
  INVALID_ARGUMENT: "INVALID_ARGUMENT",
  /** An ack named an offset never assigned in that queue. */
  INVALID_OFFSET: "INVALID_OFFSET",
  /** The store's files are damaged or not an edgehub store. */
  STORE_CORRUPT: "STORE_CORRUPT",
  /** The store was written by a newer edgehub. */
  STORE_FORMAT_UNSUPPORTED: "STORE_FORMAT_UNSUPPORTED",
  /** Another process or handle has the store open. */
  STORE_LOCKED: "STORE_LOCKED",
  /** The disk refused a read or write (full disk, permissions, I/O error). */
  STORE_IO: "STORE_IO",
  /** The native add-on for this platform could not be loaded. */
  NATIVE_UNAVAILABLE: "NATIVE_UNAVAILABLE",
  /** A SAS token is malformed. */
  AUTH_BAD_TOKEN: "AUTH_BAD_TOKEN",
  /** A SAS token's expiry has passed. */
  AUTH_TOKEN_EXPIRED: "AUTH_TOKEN_EXPIRED",
  /** A SAS token is not signed by the identity's keys. */
  AUTH_BAD_SIGNATURE: "AUTH_BAD_SIGNATURE",
  /** A SAS token names a resource other than the identity on this hub. */
  AUTH_WRONG_AUDIENCE: "AUTH_WRONG_AUDIENCE",
  /** No such device or module in the registry. */
  AUTH_UNKNOWN_IDENTITY: "AUTH_UNKNOWN_IDENTITY",
  /** The TLS client certificate does not match the identity's thumbprint or trusted CA. */
  AUTH_BAD_CERTIFICATE: "AUTH_BAD_CERTIFICATE",
  /** The device or module is disabled. */
  AUTH_IDENTITY_DISABLED: "AUTH_IDENTITY_DISABLED",
  /** An on-behalf-of login names a chain in which some identity is not the child of the next. */
  AUTH_NOT_IN_SCOPE: "AUTH_NOT_IN_SCOPE",
  /** A route does not parse; the message gives the column and the reason. */
  ROUTE_INVALID: "ROUTE_INVALID",
  /** The hub's configuration is invalid; the message names the key. */
  CONFIG_INVALID: "CONFIG_INVALID",
  /** A device or module of that id already exists. */
  IDENTITY_EXISTS: "IDENTITY_EXISTS",
  /** No device or module of that id. */
  IDENTITY_NOT_FOUND: "IDENTITY_NOT_FOUND",
  /** A twin patch breaks IoT Hub's rules (not an object, too deep, too large, bad key). */
  TWIN_INVALID: "TWIN_INVALID",
  /** A secret could not be decrypted: wrong key file or tampered data. */
  SECRET_UNREADABLE: "SECRET_UNREADABLE",
  /** A device or module has `maxSizeBytesPerIdentity` stored already; others are still accepted. */
  STORE_SHARE_EXCEEDED: "STORE_SHARE_EXCEEDED",
  /** A device has IoT Hub's maximum of cloud-to-device messages queued (50): a send is refused. */
  C2D_QUEUE_FULL: "C2D_QUEUE_FULL",
} as const;

/** One of the codes in {@link ErrorCodes}. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every error edgehub throws: a stable `code` and, where there is one, the `cause`. */
export class EdgeHubError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EdgeHubError";
    this.code = code;
  }
}

const codes = new Set<string>(Object.values(ErrorCodes));

/** True when `s` is a known code. */
export function isErrorCode(s: string): s is ErrorCode {
  return codes.has(s);
}
