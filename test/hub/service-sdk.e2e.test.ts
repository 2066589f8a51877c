import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { EdgeHub, silentLogger } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";

const run = promisify(execFile);
const child = fileURLToPath(new URL("../fixtures/service-sdk.mjs", import.meta.url));

let hub: EdgeHub | undefined;
afterEach(async () => {
  await hub?.close();
});

describe("the official azure-iothub service SDK", () => {
  it("works against the hub unchanged, trusting its CA through NODE_EXTRA_CA_CERTS", async () => {
    // The service SDK always talks to port 443: this is the only suite that binds it.
    hub = await EdgeHub.start(
      {
        hostname: "localhost",
        dataDir: join(await tempDir(), "hub"),
        listen: { host: "127.0.0.1", mqtts: 0, https: 443 },
      },
      silentLogger,
    );
    const { stdout } = await run(process.execPath, [child, hub.serviceConnectionString], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: hub.caFile },
    });
    const out = JSON.parse(stdout);
    expect(out.created).toMatchObject({
      deviceId: "sdk-dev",
      status: "enabled",
      authentication: { type: "sas" },
    });
    expect(out.created.authentication.symmetricKey.primaryKey).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(out.got.generationId).toBe(out.created.generationId);
    expect(out.list).toEqual(["sdk-dev", "sdk-edge"]);
    expect(out.twin.desired.$version).toBe(1);
    expect(out.updated).toMatchObject({ tags: { line: "3" }, properties: { desired: { rate: 5 } } });
    expect(out.query).toEqual(["sdk-dev"]);
    expect(out.notFound).toBe("DeviceNotFoundError");
    expect(out.duplicate).toBe("DeviceAlreadyExistsError");
    // IoT Hub answers 404 DeviceNotOnline, which this SDK surfaces as a plain "Not found" Error.
    expect(out.method).toBe("Error");
    expect(out.afterDelete).toEqual(["sdk-dev"]);
    expect((await hub.twins.get("sdk-dev")).desired.properties).toEqual({ rate: 5 });
  });
});
