import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Each file makes its own database and Redis prefix, so files run in parallel.
    fileParallelism: true,
    // Most files spend their time waiting on real processes, timers and faults (a restarted Redis, a cut
    // proxy), not on the CPU: four at once on two cores keep `npm test` near two minutes (one at a time: five).
    maxWorkers: 4,
  },
});
