/**
 * Every command of the table (`edgehub help` lists them) once against a hub run by
 * `edgehub start --json`, as processes: a run with `--json` whose output parses, and a run
 * that fails with a non-zero exit and one line on stderr. The cases are keyed by command
 * name and checked against the table, so a new command without a case fails this test.
 */
import https from "node:https";
import { join } from "node:path";
import { Client, Message } from "azure-iot-device";
import { Mqtt } from "azure-iot-device-mqtt";
import { describe, expect, it } from "vitest";
import { createSasToken } from "../../ts/auth/sas.js";
import { synopsis } from "../../ts/cli/command.js";
import { allCommands } from "../../ts/cli/commands.js";
import { readServiceLogin } from "../../ts/cli/login.js";
import { MAX_EVENT_STREAMS } from "../../ts/service/events.js";
import {
  type CliRun,
  cli,
  runCli,
  type StartedHub,
  spawnCli,
  spawnTracked,
  startJson,
} from "../helpers/cli.js";
import { tempDir } from "../helpers/fixtures.js";

/** What a case gets: the hub, where to write files, an SDK device once one is connected. */
interface Context {
  hub: StartedHub;
  dir: string;
  device?: Client;
}

/** One command's two runs. `ok` runs with `--json` (added here) and checks the parsed output. */
interface Case {
  /** Arguments after `edgehub`; the hub's login is added for commands that take one. */
  ok?: string[];
  check?: (json: unknown, ctx: Context) => void | Promise<void>;
  /** Instead of `ok`: a run of its own (a stream, the hub itself). */
  run?: (ctx: Context) => Promise<void>;
  fail: string[] | ((ctx: Context) => Promise<CliRun>);
  /** The one line on stderr, after `edgehub: `. */
  reason: RegExp;
}

const object = (v: unknown) => v as Record<string, unknown>;

/** Parsed stdout of a `--json` run that must succeed. */
async function json(args: string[]): Promise<unknown> {
  const r = await runCli([...args, "--json"]);
  expect(r.code, `edgehub ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout);
}

/** `n` event streams held open on the hub (what `monitor` opens), closed by the returned function. */
async function holdStreams(hub: StartedHub, n: number): Promise<() => void> {
  const login = await readServiceLogin({ dataDir: hub.ready.dataDir });
  const requests: Array<ReturnType<typeof https.request>> = [];
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve, reject) => {
      const req = https.request(
        {
          host: "localhost",
          port: hub.ready.ports.https,
          path: "/messages/events/stream?api-version=2021-04-12&from=end",
          ca: hub.caPem,
          headers: {
            authorization: createSasToken(
              login.hostname,
              login.key,
              Math.floor(Date.now() / 1000) + 600,
              login.keyName,
            ),
          },
        },
        (res) => (res.statusCode === 200 ? resolve() : reject(new Error(`stream ${i}: ${res.statusCode}`))),
      );
      req.on("error", () => undefined);
      req.end();
      requests.push(req);
    });
  }
  return () => {
    for (const r of requests) r.destroy();
  };
}

const CASES: Record<string, Case> = {
  start: {
    // The hub every other case runs against was started with --json (its ready line is checked below).
    run: async ({ hub }) => {
      expect(hub.ready).toMatchObject({ event: "ready", hostname: "localhost", host: "127.0.0.1" });
      expect(hub.ready.ports.mqtts).toBeGreaterThan(0);
      expect(hub.ready.ports.metrics).toBeGreaterThan(0);
      expect(hub.ready.serviceConnectionStringFile).toBe(
        join(hub.ready.dataDir, "service-connection-string"),
      );
    },
    fail: ({ dir }) => runCli(["start", "--config", join(dir, "missing.json")]),
    reason: /^cannot read the configuration .*missing\.json \(ENOENT\) \[CONFIG_INVALID\]$/,
  },
  "device create": {
    ok: ["device", "create", "dev1"],
    check: (d) => expect(d).toMatchObject({ deviceId: "dev1", authentication: { type: "sas" } }),
    fail: ["device", "create", "dev1"],
    reason: /^the hub answered 409 DeviceAlreadyExists: /,
  },
  "device show": {
    ok: ["device", "show", "dev1"],
    check: (d) => expect(d).toMatchObject({ deviceId: "dev1" }),
    fail: ["device", "show", "nobody"],
    reason: /^device nobody not found \[IDENTITY_NOT_FOUND\]$/,
  },
  "device list": {
    ok: ["device", "list"],
    check: (d) => expect((d as Array<{ deviceId: string }>).map((x) => x.deviceId)).toContain("dev1"),
    // A login that is not the hub's: 401, with what to check.
    fail: [
      "device",
      "list",
      "--login",
      "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA",
    ],
    reason:
      /^the hub answered 401 IotHubUnauthorizedAccess: Unauthorized \(check the service connection string/,
  },
  "device connection-string": {
    ok: ["device", "connection-string", "dev1"],
    check: async (d, ctx) => {
      const cs = String(object(d).connectionString);
      expect(cs).toMatch(
        /^HostName=localhost;DeviceId=dev1;SharedAccessKey=[^;]+;GatewayHostName=localhost:\d+$/,
      );
      // The device the method and monitor cases use: the official SDK with exactly this string.
      ctx.device = Client.fromConnectionString(cs, Mqtt);
      await ctx.device.setOptions({ ca: ctx.hub.caPem });
      await ctx.device.open();
      ctx.device.onDeviceMethod("ping", (request, response) => {
        response.send(200, { pong: request.payload }, () => undefined);
      });
    },
    fail: ["device", "connection-string", "dev1", "--module", "nothing"],
    reason: /^module dev1\/nothing not found \[IDENTITY_NOT_FOUND\]$/,
  },
  "module create": {
    ok: ["module", "create", "dev1", "filter"],
    check: (m) => expect(m).toMatchObject({ deviceId: "dev1", moduleId: "filter" }),
    fail: ["module", "create", "nobody", "filter"],
    reason: /nobody not found/,
  },
  "module show": {
    ok: ["module", "show", "dev1", "filter"],
    check: (m) => expect(m).toMatchObject({ moduleId: "filter" }),
    fail: ["module", "show", "dev1", "nothing"],
    reason: /^module dev1\/nothing not found \[IDENTITY_NOT_FOUND\]$/,
  },
  "module list": {
    ok: ["module", "list", "dev1"],
    check: (m) => expect((m as Array<{ moduleId: string }>).map((x) => x.moduleId)).toEqual(["filter"]),
    fail: ["module", "list", "nobody"],
    reason: /nobody not found/,
  },
  "twin show": {
    ok: ["twin", "show", "dev1"],
    check: (t) => expect(t).toMatchObject({ deviceId: "dev1" }),
    fail: ["twin", "show", "nobody"],
    reason: /nobody not found/,
  },
  "twin update": {
    ok: ["twin", "update", "dev1", "--desired", '{"interval":5}'],
    check: (t) => expect(t).toMatchObject({ properties: { desired: { interval: 5 } } }),
    fail: ["twin", "update", "nobody", "--desired", '{"interval":5}'],
    reason: /nobody not found/,
  },
  "method invoke": {
    ok: ["method", "invoke", "dev1", "ping", "--payload", '{"n":1}'],
    check: (r) => expect(r).toEqual({ status: 200, payload: { pong: { n: 1 } } }),
    fail: ["method", "invoke", "dev1/filter", "ping"],
    reason: /not found|not connected/,
  },
  "c2d send": {
    ok: ["c2d", "send", "dev1", "hello"],
    check: (r) => expect(r).toEqual({ deviceId: "dev1", sent: true }),
    fail: ["c2d", "send", "nobody", "hello"],
    reason: /nobody not found/,
  },
  monitor: {
    run: async ({ hub, device }) => {
      const monitor = spawnCli(["monitor", "--json", ...hub.login]);
      await monitor.waitFor(/monitoring/);
      await device?.sendEvent(new Message("seen by monitor"));
      await monitor.waitFor(/seen by monitor/);
      monitor.child.kill("SIGINT");
      const ended = await monitor.exited;
      expect(ended.code).toBe(0);
      const lines = ended.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual([expect.objectContaining({ deviceId: "dev1", body: "seen by monitor" })]);

      // A reader that goes away (`| head -1`): monitor ends quietly with 0 (pipefail: its own code).
      const piped = spawnTracked("bash", [
        "-c",
        `set -o pipefail; "${process.execPath}" "${cli}" monitor --json ${hub.login.join(" ")} | head -1`,
      ]);
      await piped.waitFor(/monitoring/);
      // Until monitor writes into the closed pipe: the first line may still fit in it.
      let pipeEnded = false;
      void piped.exited.then(() => {
        pipeEnded = true;
      });
      for (let i = 0; i < 100 && !pipeEnded; i++) {
        await device?.sendEvent(new Message(`piped ${i}`));
        await new Promise((r) => setTimeout(r, 100));
      }
      const { code, stdout, stderr } = await piped.exited;
      expect(code, stderr).toBe(0);
      expect(stdout).toMatch(/^\{"deviceId":"dev1",[^\n]*"body":"piped 0"\}\n$/);
      expect(stderr).toBe("monitoring device-to-cloud messages (Ctrl-C to stop)\n");
    },
    // One stream more than a hub serves: refused with 429, said in one line.
    fail: async ({ hub }) => {
      const release = await holdStreams(hub, MAX_EVENT_STREAMS);
      try {
        return await runCli(["monitor", ...hub.login]);
      } finally {
        release();
      }
    },
    reason: new RegExp(
      `^the hub answered 429 ThrottlingException: at most ${MAX_EVENT_STREAMS} event streams`,
    ),
  },
  "connection-string show": {
    ok: ["connection-string", "show", "--default-eventhub"],
    check: (r) => {
      expect(r).toMatchObject({ name: "localhost", consumerGroups: ["$Default"] });
      expect(String(object(r).connectionString)).toMatch(
        /^Endpoint=sb:\/\/localhost\/;SharedAccessKeyName=iothubowner;SharedAccessKey=[^;]+;EntityPath=localhost$/,
      );
    },
    fail: ["connection-string", "show", "--port", "1"],
    reason: /^cannot reach the hub's service API at https:\/\/localhost:1 /,
  },
  status: {
    ok: ["status"],
    check: (s) =>
      expect(s).toMatchObject({ link: { state: "none" }, clients: { connected: 1, ids: ["dev1"] } }),
    fail: ["status", "--port", "1"],
    reason: /^cannot reach the hub's service API at https:\/\/localhost:1 /,
  },
  "identity add-children": {
    ok: ["identity", "add-children", "--device-id", "gw", "--child-list", "leaf"],
    check: (r) => expect(r).toEqual([expect.objectContaining({ deviceId: "leaf", outcome: "added" })]),
    fail: ["identity", "add-children", "--device-id", "dev1", "--child-list", "leaf"],
    reason: /dev1 is not an edge device/,
  },
  "identity list-children": {
    ok: ["identity", "list-children", "--device-id", "gw"],
    check: (r) => expect(r).toEqual(["leaf"]),
    fail: ["identity", "list-children", "--device-id", "nobody"],
    reason: /nobody not found/,
  },
  "identity remove-children": {
    ok: ["identity", "remove-children", "--device-id", "gw", "--child-list", "leaf"],
    check: (r) => expect(r).toEqual(["leaf"]),
    fail: ["identity", "remove-children", "--device-id", "nobody", "--remove-all"],
    reason: /nobody not found/,
  },
  "module delete": {
    ok: ["module", "delete", "dev1", "filter"],
    check: (r) => expect(r).toMatchObject({ deleted: true }),
    fail: ["module", "delete", "dev1", "filter"],
    reason: /filter not found/,
  },
  "device delete": {
    ok: ["device", "delete", "leaf"],
    check: (r) => expect(r).toEqual({ deviceId: "leaf", deleted: true }),
    fail: ["device", "delete", "leaf"],
    reason: /leaf not found/,
  },
  "cert create-ca": {
    ok: ["cert", "create-ca", "--out-dir", "certs"],
    check: (r) => expect(r).toMatchObject({ certificate: "certs/root-ca.pem" }),
    fail: ["cert", "create-ca", "--out-dir", "certs"],
    reason: /root-ca\.pem.*exists.*--force/,
  },
  "cert create-edge-ca": {
    ok: ["cert", "create-edge-ca", "--out-dir", "certs"],
    check: (r) => expect(r).toMatchObject({ certificate: "certs/edge-ca.pem" }),
    fail: ["cert", "create-edge-ca", "--out-dir", "empty"],
    reason: /root-ca\.pem.*create-ca/,
  },
  "cert create-server": {
    ok: ["cert", "create-server", "localhost", "--out-dir", "certs"],
    check: (r) => expect(r).toMatchObject({ certificate: "certs/server.pem" }),
    fail: ["cert", "create-server", "localhost", "--out-dir", "empty"],
    reason: /edge-ca\.pem.*create-edge-ca/,
  },
  "cert create-device": {
    ok: ["cert", "create-device", "dev1", "--out-dir", "certs"],
    check: (r) => expect(object(r).thumbprint).toMatch(/^[0-9A-F]{40}$/),
    fail: ["cert", "create-device", "dev1", "--out-dir", "empty"],
    reason: /root-ca\.pem.*create-ca/,
  },
};

describe("every edgehub command", () => {
  it("has a case here for each command of the table and of `edgehub help`", async () => {
    const all = await allCommands();
    const names = all.map((c) => c.name);
    expect(Object.keys(CASES).sort()).toEqual([...names].sort());
    const help = await runCli(["help"]);
    for (const c of all) expect(help.stdout).toContain(synopsis(c));
  });

  it("runs each with --json against a running hub, and fails each with one line", async () => {
    const dir = await tempDir();
    const hub = await startJson(dir, {
      hostname: "localhost",
      dataDir: join(dir, "data"),
      listen: { host: "127.0.0.1", mqtts: 0, https: 0, amqps: false },
      metrics: { port: 0 },
      logLevel: "warn",
    });
    const ctx: Context = { hub, dir };
    const all = await allCommands();
    // What the identity cases work on: an edge device and a device to make its child.
    await json(["device", "create", "gw", "--edge", ...hub.login]);
    await json(["device", "create", "leaf", ...hub.login]);
    /** `args` with the hub's login options that `args` does not give itself (a case's own win). */
    const withLogin = (spec: string, args: string[]) => {
      if (!all.find((c) => c.name === spec)?.login) return args;
      const extra: string[] = [];
      for (let i = 0; i < hub.login.length; i += 2)
        if (!args.includes(hub.login[i] ?? "")) extra.push(hub.login[i] ?? "", hub.login[i + 1] ?? "");
      return [...args, ...extra];
    };
    try {
      for (const [name, c] of Object.entries(CASES)) {
        // The cert commands write relative to where they run: the test's dir.
        const cwd = name.startsWith("cert ") ? dir : undefined;
        if (c.run) await c.run(ctx);
        else if (c.ok) {
          const r = await runCli([...withLogin(name, c.ok), "--json"], cwd);
          expect(r.code, `${name}: ${r.stderr}`).toBe(0);
          await c.check?.(JSON.parse(r.stdout), ctx);
        }
        const failed =
          typeof c.fail === "function" ? await c.fail(ctx) : await runCli(withLogin(name, c.fail), cwd);
        expect(failed.code, `${name} should fail: ${failed.stdout}`).not.toBe(0);
        expect(failed.stderr, name).toMatch(/^edgehub: [^\n]*\n$/);
        expect(failed.stderr.slice("edgehub: ".length).trimEnd(), name).toMatch(c.reason);
      }
    } finally {
      await ctx.device?.close();
    }
    hub.run.child.kill("SIGTERM");
    const stopped = await hub.run.exited;
    expect(stopped.code).toBe(0);
    expect(
      stopped.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).event),
    ).toEqual(["ready", "stopping"]);
  }, 240_000);
});
