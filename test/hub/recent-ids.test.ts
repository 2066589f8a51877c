import { describe, expect, it } from "vitest";
import { RecentIds } from "../../ts/routing/recent-ids.js";

describe("the resend filter's memory of forwarder ids", () => {
  it("remembers each sender's last 512 ids, apart from other senders'", () => {
    const r = new RecentIds();
    for (let i = 0; i < 600; i++) r.add("dev1", `edge1/abc/u/${i}`);
    r.add("dev2", "edge1/abc/u/0");
    expect(r.has("dev1", "edge1/abc/u/599")).toBe(true);
    expect(r.has("dev1", "edge1/abc/u/88")).toBe(true);
    expect(r.has("dev1", "edge1/abc/u/87")).toBe(false); // the 513th newest is forgotten
    expect(r.has("dev1", "edge1/abc/u/600")).toBe(false);
    expect(r.has("dev2", "edge1/abc/u/0")).toBe(true);
    expect(r.has("dev2", "edge1/abc/u/1")).toBe(false);
    expect(r.has("dev3", "edge1/abc/u/0")).toBe(false);
  });

  it("tells apart ids that differ in one character anywhere, and an id added twice takes one slot", () => {
    const r = new RecentIds();
    const base = "edge1/8f3a2c1d9e/p3/1234567";
    r.add("d", base);
    r.add("d", base);
    for (let i = 0; i < base.length; i++) {
      const other = `${base.slice(0, i)}${base[i] === "x" ? "y" : "x"}${base.slice(i + 1)}`;
      expect(r.has("d", other)).toBe(false);
    }
    for (let i = 0; i < 511; i++) r.add("d", `other-${i}`);
    expect(r.has("d", base)).toBe(true); // still among the last 512 distinct ids
  });

  it("forgets the least recently used sender past 4096 senders", () => {
    const r = new RecentIds();
    for (let s = 0; s < 4096; s++) r.add(`s${s}`, "id");
    r.add("s0", "id2"); // s0 is now the most recent
    r.add("s4096", "id");
    expect(r.has("s0", "id")).toBe(true);
    expect(r.has("s1", "id")).toBe(false);
    expect(r.has("s4096", "id")).toBe(true);
  });
});
