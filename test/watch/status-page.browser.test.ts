/**
 * The status page in a real browser (Debian's chromium driven by playwright-core): a root
 * and an edge under it; the page shows the link going offline when the root stops, the
 * backlog rising while a child (official SDK) publishes through the edge, and falling to
 * zero once the root is back, with the outage shaded in the chart.
 */
import { Message } from "azure-iot-device";
import { type Browser, chromium } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import type { EdgeHub } from "../../ts/index.js";
import {
  childClient,
  childOf,
  edgeIdentity,
  gatewayOf,
  startEdge,
  startRoot,
  synced,
} from "../helpers/edge.js";
import { tempDir } from "../helpers/fixtures.js";
import { stopHub } from "../helpers/hub.js";
import { fixedListen } from "../helpers/process.js";

const CHROMIUM = "/usr/bin/chromium";
let browser: Browser | undefined;

afterEach(async () => {
  await browser?.close();
  browser = undefined;
});

describe("status page", () => {
  it("shows the link going offline and the backlog rising, then draining when the root returns", async () => {
    const rootDir = await tempDir();
    const listen = await fixedListen();
    let root: EdgeHub = await startRoot(rootDir, { listen, metrics: false });
    const parent = { ...(await edgeIdentity(root, "edge1")), keepaliveSecs: 2 };
    const key = await childOf(root, "edge1", "leaf1");
    const edge = await startEdge(await tempDir(), parent, { metrics: { port: 0 } });
    await synced(edge);
    const leaf = await childClient(gatewayOf(edge), "leaf1", key);
    await leaf.open();

    browser = await chromium.launch({ executablePath: CHROMIUM });
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${edge.ports.metrics}/`);
    const text = async (id: string) => (await page.textContent(`#${id}`)) ?? "";
    const poll = { timeout: 25_000, interval: 200 };

    await expect.poll(() => text("link"), poll).toBe("online");
    await expect.poll(() => text("clients"), poll).toBe("1");
    expect(await text("client-ids")).toContain("leaf1");

    await stopHub(root);
    await expect.poll(() => text("link"), poll).toBe("offline");
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 10; j++) await leaf.sendEvent(new Message(`offline ${i}.${j}`));
      // The page follows the backlog as it grows.
      await expect.poll(async () => Number(await text("backlog")), poll).toBe((i + 1) * 10);
    }
    await expect.poll(() => text("eta"), poll).toBe("not shrinking");
    // The outage is shaded in the chart, and the backlog line climbs.
    await expect.poll(() => page.locator("#offline-bands rect").count(), poll).toBeGreaterThan(0);

    root = await startRoot(rootDir, { listen, metrics: false });
    await expect.poll(() => text("link"), poll).toBe("online");
    await expect.poll(async () => Number(await text("backlog")), poll).toBe(0);
    await expect.poll(() => text("eta"), poll).toBe("empty");
    // The chart's samples (one a second) went up to 30 and back to 0.
    const samples = () =>
      page.evaluate(async () => {
        const r = await fetch("status.json");
        return ((await r.json()) as { samples: Array<{ messages: number }> }).samples.map((s) => s.messages);
      });
    await expect.poll(async () => (await samples()).at(-1), poll).toBe(0);
    expect(Math.max(...(await samples()))).toBe(30);
    const points = await page.getAttribute("#backlog-line", "points");
    expect(points?.split(" ").length).toBeGreaterThan(1);
  }, 120_000);
});
