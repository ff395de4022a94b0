import { defineConfig } from "vitest/config";

/**
 * The chaos suite (`npm run chaos`): scenarios with real Parley processes,
 * a redis-server of their own, TCP proxies and SIGKILL. Slow, so not part of
 * `npm test`; one file at a time, as each spawns several processes.
 */
export default defineConfig({
  test: {
    include: ["test/chaos/**/*.chaos.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    maxWorkers: 1,
  },
});
