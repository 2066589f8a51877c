import { defineConfig } from "vitest/config";

// Fault campaigns (test/campaigns): SIGKILLs with a flapping uplink, power cuts on LazyFS.
// Kept out of `npm test` (vitest.config.ts): they need FUSE and root, and run for minutes.
// `npm run test:faults` and `npm run test:powercut` run them; each prints `N passed, N failed`.
export default defineConfig({
  test: {
    include: ["test/campaigns/**/*.campaign.ts"],
    pool: "forks",
    // One file at a time: each campaign loads the machine on its own.
    fileParallelism: false,
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ["default", "./test/campaigns/reporter.ts"],
  },
});
