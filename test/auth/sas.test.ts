import { randomBytes } from "node:crypto";
import { SharedAccessSignature } from "azure-iot-common";
import { describe, expect, it } from "vitest";
import { createSasToken, parseSasToken, signedByAny } from "../../ts/auth/sas.js";
import { EdgeHubError } from "../../ts/index.js";

const key = randomBytes(32).toString("base64");
const other = randomBytes(32).toString("base64");

describe("SAS tokens", () => {
  it("accepts tokens made by the official Azure SDK and checks their signature", () => {
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    const sdk = SharedAccessSignature.create("hub.local/devices/dev 1", "", key, expiry).toString();
    const token = parseSasToken(sdk);
    expect(token.resource).toBe("hub.local/devices/dev 1");
    expect(token.expiry).toBe(expiry);
    expect(signedByAny(token, [other, key])).toBe(true);
    expect(signedByAny(token, [other])).toBe(false);
  });

  it("makes tokens the official SDK's parser reads back", () => {
    const ours = createSasToken("hub.local/devices/d(1)", key, 2_000_000_000, "iothubowner");
    const parsed = SharedAccessSignature.parse(ours);
    expect(decodeURIComponent(parsed.sr)).toBe("hub.local/devices/d(1)");
    expect(parsed.skn).toBe("iothubowner");
    expect(parseSasToken(ours).keyName).toBe("iothubowner");
    expect(signedByAny(parseSasToken(ours), [key])).toBe(true);
  });

  it("refuses malformed tokens with AUTH_BAD_TOKEN", () => {
    for (const bad of [
      "",
      "Bearer x",
      "SharedAccessSignature sr=a&sig=b",
      "SharedAccessSignature sr=a&sig=b&se=soon",
      "SharedAccessSignature sr=a&sr=b&sig=c&se=1",
      "SharedAccessSignature sr=%E0%A4%A&sig=b&se=1",
      "SharedAccessSignature =x&sr=a&sig=b&se=1",
    ]) {
      expect(() => parseSasToken(bad), bad).toThrow(EdgeHubError);
      try {
        parseSasToken(bad);
      } catch (err) {
        expect((err as EdgeHubError).code).toBe("AUTH_BAD_TOKEN");
      }
    }
  });
});
