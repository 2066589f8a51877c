/**
 * AES-256-GCM encryption of secrets at rest (registry keys, credential caches), with a
 * key file created 0600 on first use. Sealed layout: version(1) | iv(12) | tag(16) | data.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmod, readFile, stat } from "node:fs/promises";
import { writeDurable } from "../durable-file.js";
import { EdgeHubError, ErrorCodes } from "../errors.js";

const VERSION = 1;
const IV = 12;
const TAG = 16;

/** Seals and opens secrets with one key. */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32)
      throw new EdgeHubError(ErrorCodes.INVALID_ARGUMENT, "a secret box key is 32 bytes");
    this.#key = key;
  }

  /** Loads the key at `path`, creating it (0600, random) when absent. */
  static async fromKeyFile(path: string): Promise<SecretBox> {
    try {
      const key = await readFile(path);
      // A key file open to other users (copied in by hand, restored from a backup) is the
      // hub's own to fix, as its data directory is.
      if (((await stat(path)).mode & 0o077) !== 0) await chmod(path, 0o600);
      if (key.length !== 32) {
        throw new EdgeHubError(ErrorCodes.SECRET_UNREADABLE, `key file ${path} is not 32 bytes`);
      }
      return new SecretBox(key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      // Durable before anything is sealed with it: the store's sealed secrets outlive a power
      // cut, so the key must too.
      const key = randomBytes(32);
      await writeDurable(path, key, 0o600);
      return new SecretBox(key);
    }
  }

  /** Encrypts `plain`; `context` (e.g. the record's key) is authenticated, binding it to its place. */
  seal(plain: Buffer, context: string): Buffer {
    const iv = randomBytes(IV);
    const c = createCipheriv("aes-256-gcm", this.#key, iv);
    c.setAAD(Buffer.from(context));
    const data = Buffer.concat([c.update(plain), c.final()]);
    return Buffer.concat([Buffer.from([VERSION]), iv, c.getAuthTag(), data]);
  }

  /** Decrypts what {@link seal} produced for the same `context`; throws `SECRET_UNREADABLE` otherwise. */
  open(sealed: Buffer, context: string): Buffer {
    if (sealed.length < 1 + IV + TAG || sealed[0] !== VERSION) {
      throw new EdgeHubError(ErrorCodes.SECRET_UNREADABLE, `sealed secret for ${context} is malformed`);
    }
    try {
      const d = createDecipheriv("aes-256-gcm", this.#key, sealed.subarray(1, 1 + IV));
      d.setAAD(Buffer.from(context));
      d.setAuthTag(sealed.subarray(1 + IV, 1 + IV + TAG));
      return Buffer.concat([d.update(sealed.subarray(1 + IV + TAG)), d.final()]);
    } catch (err) {
      throw new EdgeHubError(
        ErrorCodes.SECRET_UNREADABLE,
        `secret for ${context} failed authentication: wrong key file or altered data`,
        { cause: err },
      );
    }
  }
}
