/**
 * The campaigns' tally: one line per test as it ends, and `N passed, N failed` at the end.
 * A test that runs many checks in one body (the SIGKILL rounds share one site) reports them
 * in `task.meta.checks`; they count one by one instead of the test.
 */
import type { SerializedError } from "vitest";
import type { Reporter, TestCase, TestModule } from "vitest/node";

declare module "vitest" {
  interface TaskMeta {
    /** Checks a campaign test ran in its body, each passed or failed. */
    checks?: { passed: number; failed: number };
  }
}

export default class CampaignReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandled: ReadonlyArray<SerializedError>): void {
    let passed = 0;
    // An error outside the tests (a file that does not load, say) is a failure too.
    let failed = unhandled.length;
    for (const m of modules) {
      if (m.errors().length > 0) {
        failed++;
        console.log(`FAIL ${m.moduleId}: ${m.errors()[0]?.message}`);
      }
      for (const t of m.children.allTests()) {
        const state = t.result().state;
        if (state === "skipped" || state === "pending") continue;
        const checks = t.meta().checks;
        if (checks) {
          passed += checks.passed;
          // A test that threw before tallying still counts as a failure.
          failed += checks.failed === 0 && state === "failed" ? 1 : checks.failed;
        } else if (state === "passed") passed++;
        else failed++;
        console.log(`${state === "passed" ? "PASS" : "FAIL"} ${t.fullName}${checkText(t)}`);
      }
    }
    console.log(`${passed} passed, ${failed} failed`);
  }
}

function checkText(t: TestCase): string {
  const c = t.meta().checks;
  return c ? ` (${c.passed} checks passed, ${c.failed} failed)` : "";
}
