/**
 * `edgehub status` as a real process against a running edge hub during an outage of its
 * root: the link offline, the backlog of what a child (official SDK) sent meanwhile, in
 * text, `--json`, and `--watch` (plain lines off a terminal, ended by SIGINT).
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Message } from "azure-iot-device";
import { describe, expect, it } from "vitest";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  startEdge,
  startRoot,
  synced,
} from "../helpers/edge.js";
import { eventually, tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";

// The built command (`npm run build:ts`), awaited asynchronously: the hub it reads runs here.
const cli = fileURLToPath(new URL("../../dist/cli/edgehub.js", import.meta.url));

/** Runs `edgehub …`; sends SIGINT once `until(stdout)` holds. */
function edgehub(args: string[], until?: (stdout: string) => boolean) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
    if (until?.(stdout)) child.kill("SIGINT");
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("edgehub status", () => {
  it("reads the link, backlog and drain of an edge hub whose root is down", async () => {
    const root = await startRoot(await tempDir(), { metrics: false });
    const parent = { ...(await edgeIdentity(root, "edge1")), keepaliveSecs: 2 };
    const key = await childOf(root, "edge1", "leaf1");
    const dataDir = await tempDir();
    const edge = await startEdge(dataDir, parent, { metrics: false });
    await synced(edge);
    const leaf = await childClient(gatewayOf(edge), "leaf1", key);
    await leaf.open();
    const cut = Date.now();
    await stopHub(root);
    await eventually("edge offline", () => edge.upstream?.online === false);
    for (let i = 0; i < 5; i++) await leaf.sendEvent(new Message(`reading ${i}`));
    const login = ["--data-dir", dataDir, "--port", String(edge.ports.https)];

    const json = await edgehub(["status", "--json", ...login]);
    expect(json.stderr).toBe("");
    expect(json.code).toBe(0);
    const s = JSON.parse(json.stdout);
    expect(s.link.state).toBe("offline");
    // Down since the root went away: not the hub's start, not now.
    const since = Date.parse(s.link.since);
    expect(since).toBeGreaterThanOrEqual(cut);
    expect(since).toBeLessThanOrEqual(Date.now());
    expect(s.clients).toEqual({ connected: 1, ids: ["leaf1"] });
    expect(s.backlog).toMatchObject({ messages: 5, queues: [{ queue: "$upstream", messages: 5 }] });
    expect(s.backlog.oldestAgeMs).toBeGreaterThanOrEqual(0);
    expect(s.drain.etaSecs).toBeNull();
    expect(s.quota.usedBytes).toBe(s.backlog.bytes);
    expect(s.counters).toEqual({ expired: 0, dropped: 0, deadLettered: 0 });

    const text = await edgehub(["status", ...login]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^parent link {2}offline to localhost since /m);
    expect(text.stdout).toMatch(/^backlog {6}5 messages, /m);
    expect(text.stdout).toMatch(/^ {2}\$upstream +\[#+\] 5 msgs/m);
    expect(text.stdout).toMatch(/^drain .*not shrinking$/m);
    expect(text.stdout).toMatch(/^quota {8}\[[#.]+\] [\d.]+ % of 10\.00 GiB$/m);

    // The outage goes on: the backlog grows, the link is down since the same moment.
    for (let i = 5; i < 8; i++) await leaf.sendEvent(new Message(`reading ${i}`));
    const later = JSON.parse((await edgehub(["status", "--json", ...login])).stdout);
    expect(later.link).toEqual(s.link);
    expect(later.backlog).toMatchObject({ messages: 8, queues: [{ queue: "$upstream", messages: 8 }] });
    expect(later.backlog.bytes).toBeGreaterThan(s.backlog.bytes);
    expect(later.backlog.oldestAgeMs).toBeGreaterThanOrEqual(s.backlog.oldestAgeMs);

    // Off a terminal, --watch prints a line a second until interrupted.
    const watch = await edgehub(["status", "--watch", ...login], (out) => out.split("\n").length > 2);
    expect(watch.code).toBe(0);
    const lines = watch.stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of lines) expect(line).toMatch(/ link=offline clients=1 backlog=8 /);
  }, 60_000);

  it("exits non-zero with one line when the hub cannot be reached", async () => {
    const dataDir = await tempDir();
    const r = await edgehub([
      "status",
      "--login",
      "HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=AAAA",
      "--data-dir",
      dataDir,
      "--port",
      "1",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^edgehub: cannot reach the hub's service API at https:\/\/localhost:1 /);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const usage = await edgehub(["status", "--bogus"]);
    expect(usage.code).toBe(2);
  });
});
