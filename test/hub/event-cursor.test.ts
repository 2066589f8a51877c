/** Where an events stream starts: `from` as the caller gives it (hostile text), and back. */
import { describe, expect, it } from "vitest";
import { formatCursor, parseCursor } from "../../ts/service/events.js";
import { ApiError } from "../../ts/service/http.js";
import { UPSTREAM_QUEUES } from "../../ts/vocabulary.js";

const followed = ["$upstream/p0", "$upstream"];
const tails = new Map([
  ["$upstream/p0", 4],
  ["$upstream", 9],
  ["$events", 100],
]);

describe("events stream cursor", () => {
  it("starts at the tails for end, at one offset for a number, where a reader left off for a cursor", () => {
    expect([...parseCursor("end", followed, tails)]).toEqual([
      ["$upstream/p0", 4],
      ["$upstream", 9],
    ]);
    expect([...parseCursor("3", followed, tails)]).toEqual([
      ["$upstream/p0", 3],
      ["$upstream", 3],
    ]);
    // A queue the reader did not name starts at 0: everything of it still stored.
    expect([...parseCursor("$upstream:12", followed, tails)]).toEqual([
      ["$upstream/p0", 0],
      ["$upstream", 12],
    ]);
    const all = new Map(UPSTREAM_QUEUES.map((q, i) => [q, i * 1000]));
    expect(parseCursor(formatCursor(all), UPSTREAM_QUEUES, tails)).toEqual(all);
  });

  it("refuses queues it does not follow, bad offsets and overlong text with 400", () => {
    for (const from of [
      "$events:1",
      "$upstream:1,__proto__:2",
      "$upstream:-1",
      "$upstream:1.5",
      "$upstream:",
      ":5",
      "-1",
      "1e3",
      "9007199254740993",
      `$upstream:1,${"$upstream:1,".repeat(300)}`,
    ]) {
      const err = (() => {
        try {
          parseCursor(from, followed, tails);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(err, from).toBeInstanceOf(ApiError);
      expect((err as ApiError).status, from).toBe(400);
    }
  });
});
