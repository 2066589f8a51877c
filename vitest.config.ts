import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The native add-on and child processes are safest in forked workers.
    pool: "forks",
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
