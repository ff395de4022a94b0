import { defineConfig } from "vitest/config";

/**
 * The browser suite (`npm run test:browser`): Debian's Chromium, driven by playwright-core, against a real
 * Parley (API and worker in the test's process, the simulator as its model) through the console it serves
 * at `/`. Slow, so not part of `npm test`: its files end in `.browser.ts`, which the main config's
 * `*.test.ts` does not match. Each file starts its own Parley and Chromium; two files at once on two cores.
 */
export default defineConfig({
  test: {
    include: ["test/browser/**/*.browser.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Generous: a page, its Parley, Postgres and Redis share two noisy cores, and replies are paced in real time.
    testTimeout: 180_000,
    hookTimeout: 120_000,
    fileParallelism: true,
    maxWorkers: 2,
  },
});
