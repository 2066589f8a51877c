import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { EdgeHub, HubConfigInput } from "../../ts/index.js";
import { tempDir } from "../helpers/fixtures.js";
import { startHub } from "../helpers/hub.js";

// Runs the built command (`npm run build:ts` compiles it to dist/) against a hub in this
// process, so the child must be awaited asynchronously: a synchronous spawn would stall
// the hub it talks to.
const cli = fileURLToPath(new URL("../../dist/cli/edgehub.js", import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function edgehub(args: string[], cwd?: string): Promise<Run> {
  const child = spawn(process.execPath, [cli, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    ...(cwd ? { cwd } : {}),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface Fixture {
  hub: EdgeHub;
  dataDir: string;
  /** `--data-dir … --port …` for this hub. */
  login: string[];
  scope(edgeId: string): string;
  parentScopes(id: string): string[] | undefined;
  deviceScope(id: string): string | undefined;
  identity(command: string, ...args: string[]): Promise<Run>;
}

/** A hub with edge devices edge1 and edge2 and plain devices a, b, c. */
async function fixture(extra: HubConfigInput = {}): Promise<Fixture> {
  const dataDir = join(await tempDir(), "hub");
  const hub = await startHub(dataDir, extra);
  for (const deviceId of ["edge1", "edge2"])
    await hub.registry.createDevice({ deviceId, capabilities: { iotEdge: true } });
  for (const deviceId of ["a", "b", "c"]) await hub.registry.createDevice({ deviceId });
  const login = ["--data-dir", dataDir, "--port", String(hub.ports.https)];
  return {
    hub,
    dataDir,
    login,
    scope: (edgeId) => hub.registry.getDevice(edgeId)?.deviceScope ?? "",
    parentScopes: (id) => hub.registry.getDevice(id)?.parentScopes,
    deviceScope: (id) => hub.registry.getDevice(id)?.deviceScope,
    identity: (command, ...args) => edgehub(["identity", command, ...args, ...login]),
  };
}

describe("edgehub identity (parent/child through the service API)", { timeout: 60_000 }, () => {
  it("adds listed children with the parent's scope, keeps their keys, lists them, and is idempotent", async () => {
    const f = await fixture();
    const keysBefore = f.hub.registry.getDevice("a")?.authentication;
    const added = await f.identity("add-children", "--device-id", "edge1", "--child-list", "a, b");
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toBe("a: added to edge1\nb: added to edge1\n");
    const scope = f.scope("edge1");
    expect(scope).toMatch(/^ms-azure-iot-edge:\/\/edge1-\d+$/);
    for (const id of ["a", "b"]) {
      expect(f.parentScopes(id)).toEqual([scope]);
      expect(f.deviceScope(id)).toBe(scope);
    }
    expect(f.parentScopes("c")).toEqual([]);
    expect(f.deviceScope("c")).toBeUndefined();
    expect(f.hub.registry.getDevice("a")?.authentication).toEqual(keysBefore);
    expect(f.hub.registry.getDevice("a")?.status).toBe("enabled");

    const listed = await f.identity("list-children", "--device-id", "edge1");
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toBe("a\nb\n");
    expect((await f.identity("list-children", "--device-id", "edge2")).stdout).toBe("");

    const again = await f.identity("add-children", "--device-id", "edge1", "--child-list", "a,c");
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe("a: already a child of edge1\nc: added to edge1\n");
    expect(f.parentScopes("c")).toEqual([scope]);
  });

  it("adds the devices a --where condition selects, never the parent itself, and refuses cycles", async () => {
    const f = await fixture({ allowNesting: true });
    await f.hub.twins.patchTags("a", { line: "3" });
    await f.hub.twins.patchTags("c", { line: "3" });
    const byTag = await f.identity("add-children", "--device-id", "edge1", "--where", "tags.line = '3'");
    expect(byTag.code, byTag.stderr).toBe(0);
    const scope1 = f.scope("edge1");
    expect(f.parentScopes("a")).toEqual([scope1]);
    expect(f.parentScopes("c")).toEqual([scope1]);
    expect(f.parentScopes("b")).toEqual([]);

    // Both edge devices match; only edge2 becomes a child, and keeps its own scope.
    const edges = await f.identity(
      "add-children",
      "--device-id",
      "edge1",
      "--where",
      "capabilities.iotEdge = true",
    );
    expect(edges.code, edges.stderr).toBe(0);
    expect(edges.stdout).toBe("edge2: added to edge1\n");
    expect(f.parentScopes("edge2")).toEqual([scope1]);
    expect(f.deviceScope("edge2")).toMatch(/^ms-azure-iot-edge:\/\/edge2-\d+$/);
    expect(f.parentScopes("edge1")).toEqual([]);
    expect((await f.identity("list-children", "--device-id", "edge1")).stdout).toBe("a\nc\nedge2\n");

    const cycle = await f.identity("add-children", "--device-id", "edge2", "--child-list", "edge1");
    expect(cycle.code).toBe(1);
    expect(cycle.stderr).toContain("edge1 is an ancestor of edge2");
    expect(f.parentScopes("edge1")).toEqual([]);

    const onlyParent = await f.identity(
      "add-children",
      "--device-id",
      "edge1",
      "--where",
      "deviceId = 'edge1'",
    );
    expect(onlyParent.code).toBe(1);
    expect(onlyParent.stderr).toContain("no device other than edge1 matches");

    const badQuery = await f.identity("add-children", "--device-id", "edge1", "--where", "status LIKE 'x'");
    expect(badQuery.code).toBe(1);
    expect(badQuery.stderr).toContain("[INVALID_ARGUMENT]");
    expect(f.parentScopes("b")).toEqual([]);
  });

  it("with allowNesting false an edge device cannot become a child: the hub's refusal is reported", async () => {
    const f = await fixture({ allowNesting: false });
    const r = await f.identity("add-children", "--device-id", "edge1", "--child-list", "edge2");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("failed on edge2");
    expect(r.stderr).toContain("allowNesting");
    expect(f.parentScopes("edge2")).toEqual([]);
  });

  it("refuses a child that has another parent, changing nothing, unless --force moves it", async () => {
    const f = await fixture();
    const scope1 = f.scope("edge1");
    const scope2 = f.scope("edge2");
    await f.hub.registry.createDevice({ deviceId: "x", deviceScope: scope2 });
    expect(f.parentScopes("x")).toEqual([scope2]);

    const refused = await f.identity("add-children", "--device-id", "edge1", "--child-list", "a,x");
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("x (child of edge2) already has another parent");
    expect(refused.stderr).toContain("--force");
    expect(refused.stderr).toContain("[INVALID_ARGUMENT]");
    expect(f.parentScopes("x")).toEqual([scope2]);
    expect(f.parentScopes("a")).toEqual([]);

    const forced = await f.identity("add-children", "--device-id", "edge1", "--child-list", "a,x", "--force");
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toBe("a: added to edge1\nx: moved from edge2 to edge1\n");
    expect(f.parentScopes("x")).toEqual([scope1]);
    expect(f.deviceScope("x")).toBe(scope1);
    expect(f.parentScopes("a")).toEqual([scope1]);
    expect((await f.identity("list-children", "--device-id", "edge2")).stdout).toBe("");
    expect((await f.identity("list-children", "--device-id", "edge1")).stdout).toBe("a\nx\n");
  });

  it("removes listed children, refuses one that is not a child, and removes all", async () => {
    const f = await fixture();
    const scope = f.scope("edge1");
    for (const id of ["a", "b", "c"]) await f.hub.registry.updateDevice({ deviceId: id, deviceScope: scope });

    const one = await f.identity("remove-children", "--device-id", "edge1", "--child-list", "a");
    expect(one.code, one.stderr).toBe(0);
    expect(one.stdout).toBe("a: removed from edge1\n");
    expect(f.parentScopes("a")).toEqual([]);
    expect(f.deviceScope("a")).toBeUndefined();
    expect(f.parentScopes("b")).toEqual([scope]);

    const stranger = await f.identity("remove-children", "--device-id", "edge1", "--child-list", "b,a");
    expect(stranger.code).toBe(1);
    expect(stranger.stderr).toContain("a is not a child of edge1");
    expect(f.parentScopes("b")).toEqual([scope]);

    const all = await f.identity("remove-children", "--device-id", "edge1", "--remove-all");
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toBe("b: removed from edge1\nc: removed from edge1\n");
    for (const id of ["a", "b", "c"]) {
      expect(f.parentScopes(id)).toEqual([]);
      expect(f.deviceScope(id)).toBeUndefined();
    }
    const none = await f.identity("remove-children", "--device-id", "edge1", "--remove-all");
    expect(none.code).toBe(0);
    expect(none.stderr).toBe("edge1 has no children\n");
    expect((await f.identity("list-children", "--device-id", "edge1")).stdout).toBe("");
  });

  it("fails naming the id for an unknown parent, a parent that is not edge, an unknown child, or the parent as its own child", async () => {
    const f = await fixture();
    const ghost = await f.identity("add-children", "--device-id", "ghost", "--child-list", "a");
    expect(ghost.code).toBe(1);
    expect(ghost.stderr).toContain("parent device ghost not found [IDENTITY_NOT_FOUND]");

    for (const command of ["add-children", "list-children", "remove-children"]) {
      const extra = command === "list-children" ? [] : ["--child-list", "b"];
      const notEdge = await f.identity(command, "--device-id", "a", ...extra);
      expect(notEdge.code).toBe(1);
      expect(notEdge.stderr).toContain("parent device a is not an edge device");
    }

    const unknownChild = await f.identity("add-children", "--device-id", "edge1", "--child-list", "b,ghost");
    expect(unknownChild.code).toBe(1);
    expect(unknownChild.stderr).toContain("child device ghost not found");
    expect(unknownChild.stderr).toContain("[IDENTITY_NOT_FOUND]");
    expect(f.parentScopes("b")).toEqual([]);

    const removeGhost = await f.identity("remove-children", "--device-id", "edge1", "--child-list", "ghost");
    expect(removeGhost.code).toBe(1);
    expect(removeGhost.stderr).toContain("child device ghost not found");

    const self = await f.identity("add-children", "--device-id", "edge1", "--child-list", "edge1");
    expect(self.code).toBe(1);
    expect(self.stderr).toContain("edge1 cannot be a child of itself");
    expect(f.parentScopes("edge1")).toEqual([]);
  });

  it("prints usage (exit 2) for a bad command line", async () => {
    const f = await fixture();
    const cases: Array<[string[], string]> = [
      [["add-children", "--child-list", "a"], "needs --device-id"],
      [["add-children", "--device-id", "edge1"], "one of --child-list or --where"],
      [
        ["add-children", "--device-id", "edge1", "--child-list", "a", "--where", "status = 'enabled'"],
        "one of",
      ],
      [["remove-children", "--device-id", "edge1"], "one of --child-list or --remove-all"],
      [["remove-children", "--device-id", "edge1", "--where", "x = 1"], "--where does not apply"],
      [["list-children", "--device-id", "edge1", "--force"], "--force does not apply"],
      [["add-children", "--device-id", "edge1", "--child-list", " , "], "names no device"],
      [["frobnicate"], "identity needs a command"],
    ];
    for (const [args, message] of cases) {
      const [command = "", ...rest] = args;
      const r = await f.identity(command, ...rest);
      expect(r.code, args.join(" ")).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stderr).toContain("usage: edgehub");
    }
    const badPort = await edgehub([
      "identity",
      "list-children",
      "--device-id",
      "edge1",
      "--data-dir",
      f.dataDir,
      "--port",
      "http",
    ]);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toContain("--port http is not a port number");
    expect(f.parentScopes("a")).toEqual([]);
    const help = await edgehub(["identity", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("edgehub identity add-children --device-id");
  });

  it("logs in with --login and --ca; a wrong key, a missing CA or a closed port fail with what to check", async () => {
    const f = await fixture();
    await f.hub.registry.updateDevice({ deviceId: "b", deviceScope: f.scope("edge1") });
    const elsewhere = await tempDir(); // no ./edgehub-data here
    const port = ["--port", String(f.hub.ports.https)];
    const ca = ["--ca", join(f.dataDir, "certs", "ca.pem")];
    const cs = f.hub.serviceConnectionString;

    const ok = await edgehub(
      ["identity", "list-children", "--device-id", "edge1", "--login", cs, ...port, ...ca],
      elsewhere,
    );
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toBe("b\n");

    const wrongKey = cs.replace(
      /SharedAccessKey=[^;]+/,
      `SharedAccessKey=${Buffer.alloc(32, 7).toString("base64")}`,
    );
    const denied = await edgehub(
      [
        "identity",
        "add-children",
        "--device-id",
        "edge1",
        "--child-list",
        "a",
        "--login",
        wrongKey,
        ...port,
        ...ca,
      ],
      elsewhere,
    );
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain("401 IotHubUnauthorizedAccess");
    expect(denied.stderr).not.toContain(Buffer.alloc(32, 7).toString("base64"));
    expect(f.parentScopes("a")).toEqual([]);

    const untrusted = await edgehub(
      ["identity", "list-children", "--device-id", "edge1", "--login", cs, ...port],
      elsewhere,
    );
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain("pass --ca");

    const noLogin = await edgehub(["identity", "list-children", "--device-id", "edge1", ...port], elsewhere);
    expect(noLogin.code).toBe(1);
    expect(noLogin.stderr).toContain("edgehub-data/service-connection-string");

    const closed = await freePort();
    const unreachable = await edgehub([
      "identity",
      "list-children",
      "--device-id",
      "edge1",
      "--data-dir",
      f.dataDir,
      "--port",
      String(closed),
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toContain("cannot reach the hub's service API");
  });
});

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}
