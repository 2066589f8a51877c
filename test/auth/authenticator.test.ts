import { join } from "node:path";
import { SharedAccessSignature } from "azure-iot-common";
import { beforeEach, describe, expect, it } from "vitest";
import { Authenticator, type PeerCertificate } from "../../ts/auth/authenticator.js";
import { type Device, Registry } from "../../ts/auth/registry.js";
import { SecretBox } from "../../ts/auth/secret-box.js";
import type { EdgeHubError } from "../../ts/index.js";
import { openStore, tempDir } from "../helpers/fixtures.js";

const HOST = "hub.local";
const soon = () => Math.floor(Date.now() / 1000) + 600;
const sdkToken = (resource: string, key: string, expiry = soon()) =>
  Buffer.from(SharedAccessSignature.create(resource, "", key, expiry).toString());

let reg: Registry;
let dev: Device;
let auth: Authenticator;
beforeEach(async () => {
  const dir = await tempDir();
  reg = await Registry.open(await openStore(join(dir, "s")), await SecretBox.fromKeyFile(join(dir, "k")));
  dev = await reg.createDevice({ deviceId: "dev1" });
  await reg.createModule({ deviceId: "dev1", moduleId: "mod" });
  auth = new Authenticator(reg, [HOST, "parent.hub"]);
});

function codeOf(f: () => unknown): string {
  try {
    f();
    return "accepted";
  } catch (err) {
    return (err as EdgeHubError).code;
  }
}

const key = () => dev.authentication.symmetricKey?.primaryKey ?? "";
const username = (clientId: string) => `${HOST}/${clientId}/?api-version=2021-04-12&DeviceClientType=x`;

describe("authenticator", () => {
  it("accepts device and module SAS tokens from the official SDK, primary or secondary key", () => {
    expect(
      auth.authenticate({
        clientId: "dev1",
        username: username("dev1"),
        password: sdkToken(`${HOST}/devices/dev1`, key()),
      }),
    ).toMatchObject({
      deviceId: "dev1",
      clientId: "dev1",
      expiresAt: expect.any(Number),
    });
    const secondary = dev.authentication.symmetricKey?.secondaryKey ?? "";
    expect(
      codeOf(() =>
        auth.authenticate({
          clientId: "dev1",
          username: username("dev1"),
          password: sdkToken(`parent.hub/devices/dev1`, secondary),
        }),
      ),
    ).toBe("accepted");
    const mkey = reg.getModule("dev1", "mod")?.authentication.symmetricKey?.primaryKey ?? "";
    expect(
      auth.authenticate({
        clientId: "dev1/mod",
        username: username("dev1/mod"),
        password: sdkToken(`${HOST}/devices/dev1/modules/mod`, mkey),
      }),
    ).toMatchObject({ deviceId: "dev1", moduleId: "mod", clientId: "dev1/mod" });
  });

  it("refuses each bad credential with its own code", async () => {
    const ok = { clientId: "dev1", username: username("dev1") };
    const cases: Array<[string, () => unknown]> = [
      [
        "AUTH_UNKNOWN_IDENTITY",
        () =>
          auth.authenticate({
            ...ok,
            clientId: "ghost",
            username: username("ghost"),
            password: sdkToken(`${HOST}/devices/ghost`, key()),
          }),
      ],
      ["AUTH_UNKNOWN_IDENTITY", () => auth.authenticate({ ...ok, clientId: "a/b/c" })],
      [
        "AUTH_BAD_SIGNATURE",
        () =>
          auth.authenticate({
            ...ok,
            password: sdkToken(`${HOST}/devices/dev1`, Buffer.alloc(32, 1).toString("base64")),
          }),
      ],
      [
        "AUTH_TOKEN_EXPIRED",
        () => auth.authenticate({ ...ok, password: sdkToken(`${HOST}/devices/dev1`, key(), 1000) }),
      ],
      [
        "AUTH_WRONG_AUDIENCE",
        () => auth.authenticate({ ...ok, password: sdkToken(`${HOST}/devices/other`, key()) }),
      ],
      [
        "AUTH_WRONG_AUDIENCE",
        () => auth.authenticate({ ...ok, password: sdkToken(`evil.hub/devices/dev1`, key()) }),
      ],
      ["AUTH_BAD_TOKEN", () => auth.authenticate({ ...ok, password: Buffer.from("hunter2") })],
      ["AUTH_BAD_TOKEN", () => auth.authenticate({ ...ok })],
      [
        "AUTH_BAD_TOKEN",
        () =>
          auth.authenticate({
            ...ok,
            username: "evil.hub/dev1/?api-version=1",
            password: sdkToken(`${HOST}/devices/dev1`, key()),
          }),
      ],
      [
        "AUTH_BAD_TOKEN",
        () =>
          auth.authenticate({
            ...ok,
            username: `${HOST}/dev2/`,
            password: sdkToken(`${HOST}/devices/dev1`, key()),
          }),
      ],
    ];
    for (const [code, f] of cases) expect(codeOf(f)).toBe(code);
    // IoT Hub's cap: a token may expire at most ten years ahead.
    const year = 365 * 86_400;
    const lasting = (years: number) =>
      sdkToken(`${HOST}/devices/dev1`, key(), Math.floor(Date.now() / 1000) + years * year);
    expect(codeOf(() => auth.authenticate({ ...ok, password: lasting(9.9) }))).toBe("accepted");
    expect(codeOf(() => auth.authenticate({ ...ok, password: lasting(10.1) }))).toBe("AUTH_BAD_TOKEN");
    expect(codeOf(() => auth.authenticateToken(lasting(10.1).toString()))).toBe("AUTH_BAD_TOKEN");
    await reg.updateDevice({ deviceId: "dev1", status: "disabled" });
    expect(
      codeOf(() => auth.authenticate({ ...ok, password: sdkToken(`${HOST}/devices/dev1`, key()) })),
    ).toBe("AUTH_IDENTITY_DISABLED");
  });
});

describe("on-behalf-of logins (auth-chain)", () => {
  it("takes the chain as Microsoft's edge hub sends it, starting with the client itself, and refuses other forms", async () => {
    const edge1 = await reg.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    const edge2 = await reg.createDevice({
      deviceId: "edge2",
      capabilities: { iotEdge: true },
      parentScopes: [edge1.deviceScope as string],
    });
    await reg.createDevice({ deviceId: "leaf1", deviceScope: edge1.deviceScope });
    await reg.createModule({ deviceId: "edge1", moduleId: "mod1" });
    await reg.createModule({ deviceId: "edge2", moduleId: "mod2" });
    // Signed as Microsoft's edge hub signs: the actor's `$edgeHub` token (ModuleTokenProvider).
    const edgeHubKey = reg.getModule("edge1", "$edgeHub")?.authentication.symmetricKey?.primaryKey ?? "";
    const login = (clientId: string, chain: string) =>
      codeOf(() =>
        auth.authenticate({
          clientId,
          username: `${username(clientId)}&auth-chain=${encodeURIComponent(chain)}`,
          password: sdkToken(`${HOST}/devices/edge1/modules/$edgeHub`, edgeHubKey),
        }),
      );
    // docs/upstream-forms.md, "auth-chain": ServiceIdentityTree / AuthChainHelpers.
    expect(login("leaf1", "leaf1;edge1")).toBe("accepted");
    expect(login("edge1/mod1", "edge1/mod1;edge1")).toBe("accepted");
    expect(login("edge2/mod2", "edge2/mod2;edge2;edge1")).toBe("accepted");
    expect(login("edge2", "edge2;edge1")).toBe("accepted");
    // The chain edgehub sent for modules before: it names the device, not the module.
    expect(login("edge1/mod1", "edge1")).toBe("AUTH_NOT_IN_SCOPE");
    expect(login("edge2/mod2", "edge2;edge1")).toBe("AUTH_NOT_IN_SCOPE");
    // A module's own device must come next; a chain must not skip or invent a hop.
    expect(login("edge2/mod2", "edge2/mod2;edge1")).toBe("AUTH_NOT_IN_SCOPE");
    expect(login("leaf1", "leaf1;edge2;edge1")).toBe("AUTH_NOT_IN_SCOPE");
    expect(edge2.deviceScope).toBeDefined();
  });
});

describe("on-behalf-of logins: the actor's $edgeHub credential only", () => {
  let edgeKey: string;
  let edgeHubKey: string;
  beforeEach(async () => {
    const edge1 = await reg.createDevice({ deviceId: "edge1", capabilities: { iotEdge: true } });
    await reg.createDevice({ deviceId: "leaf1", deviceScope: edge1.deviceScope });
    edgeKey = edge1.authentication.symmetricKey?.primaryKey ?? "";
    edgeHubKey = reg.getModule("edge1", "$edgeHub")?.authentication.symmetricKey?.primaryKey ?? "";
  });
  const login = (clientId: string, chain: string, password: Buffer | undefined, peer?: PeerCertificate) =>
    codeOf(() =>
      auth.authenticate({
        clientId,
        username: `${username(clientId)}&auth-chain=${encodeURIComponent(chain)}`,
        password,
        peer,
      }),
    );

  it("refuses a login on behalf of signed with the edge device's key, accepts the $edgeHub-signed one", () => {
    const edgeHubToken = sdkToken(`${HOST}/devices/edge1/modules/$edgeHub`, edgeHubKey);
    expect(login("leaf1", "leaf1;edge1", edgeHubToken)).toBe("accepted");
    // The device's own token: audience and key are the device's, not `$edgeHub`'s.
    expect(login("leaf1", "leaf1;edge1", sdkToken(`${HOST}/devices/edge1`, edgeKey))).toBe(
      "AUTH_WRONG_AUDIENCE",
    );
    // `$edgeHub`'s audience signed with the device key.
    expect(login("leaf1", "leaf1;edge1", sdkToken(`${HOST}/devices/edge1/modules/$edgeHub`, edgeKey))).toBe(
      "AUTH_BAD_SIGNATURE",
    );
  });

  it("takes the hub's own login edge1/$edgeHub;edge1 as $edgeHub with its own keys", () => {
    const p = auth.authenticate({
      clientId: "edge1/$edgeHub",
      username: `${username("edge1/$edgeHub")}&auth-chain=${encodeURIComponent("edge1/$edgeHub;edge1")}`,
      password: sdkToken(`${HOST}/devices/edge1/modules/$edgeHub`, edgeHubKey),
    });
    expect(p).toMatchObject({ deviceId: "edge1", moduleId: "$edgeHub", clientId: "edge1/$edgeHub" });
    expect(login("edge1/$edgeHub", "edge1/$edgeHub;edge1", sdkToken(`${HOST}/devices/edge1`, edgeKey))).toBe(
      "AUTH_WRONG_AUDIENCE",
    );
  });

  it("refuses a login on behalf of made with a certificate, naming the $edgeHub token", () => {
    const peer: PeerCertificate = { der: Buffer.from("x"), commonName: "edge1", chainTrusted: true };
    let message = "";
    try {
      auth.authenticate({
        clientId: "leaf1",
        username: `${username("leaf1")}&auth-chain=${encodeURIComponent("leaf1;edge1")}`,
        peer,
      });
    } catch (err) {
      message = (err as Error).message;
      expect((err as EdgeHubError).code).toBe("AUTH_BAD_TOKEN");
    }
    expect(message).toContain("$edgeHub SAS token");
    expect(login("leaf1", "leaf1;edge1", Buffer.alloc(0), peer)).toBe("AUTH_BAD_TOKEN");
  });

  it("accepts the username IoT Hub's SDK sends: DeviceClientType and any api-version", () => {
    const token = sdkToken(`${HOST}/devices/edge1/modules/$edgeHub`, edgeHubKey);
    const product = encodeURIComponent("edgehub/0.1.0 EdgeHub/0.1.0");
    for (const version of ["2020-09-30", "2019-07-01-preview", "2021-04-12"]) {
      const p = auth.authenticate({
        clientId: "leaf1",
        username: `${HOST}/leaf1/?api-version=${version}&DeviceClientType=${product}&auth-chain=${encodeURIComponent("leaf1;edge1")}`,
        password: token,
      });
      expect(p).toMatchObject({ clientId: "leaf1", via: ["edge1"] });
    }
  });
});
