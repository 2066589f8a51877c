/**
 * A root (it answers the device scope over HTTPS), a scripted raw MQTT parent serving the
 * root's certificate, and a real edge under that parent with children `leafs`: each test
 * says exactly what the parent answers.
 */
import type { Logger } from "../../ts/index.js";
import { childOf, edgeIdentity, startEdge, startRoot, synced } from "./edge.js";
import { eventually, tempDir } from "./fixtures.js";
import { connectedRaw, type RawClient } from "./mqtt-raw.js";
import { freePort } from "./process.js";
import { RawParent } from "./raw-parent.js";

export async function scriptedSite(leafs: string[], log?: Logger) {
  const rootDir = await tempDir();
  const root = await startRoot(rootDir);
  const port = await freePort();
  const parent = await RawParent.start({ hubDir: rootDir, port });
  const keys = new Map<string, string>();
  const identity = await edgeIdentity(root, "edge1", port);
  for (const id of leafs) keys.set(id, await childOf(root, "edge1", id));
  const edge = await startEdge(await tempDir(), identity, {}, log);
  await synced(edge);
  await eventually("online", () => edge.upstream?.online === true);
  return {
    root,
    edge,
    parent,
    keys,
    leaf: (id: string): Promise<RawClient> =>
      connectedRaw(edge.ports.mqtts, edge.caCertificate, id, keys.get(id) ?? ""),
    restartParent: () => RawParent.start({ hubDir: rootDir, port }),
  };
}
