import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import type { Database } from "../../src/db/client.ts";
import { createLogger } from "../../src/logger.ts";
import { startHealthServer } from "../../src/http/health-server.ts";
import { healthRoutes } from "../../src/http/routes/health.ts";
import { freePort, useParleyProcesses, waitForOutput } from "../support/processes.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const run = promisify(execFile);

/** The image's HEALTHCHECK (dist/cli/healthcheck.js) with `env`: its exit code and stderr. */
async function healthcheck(env: Record<string, string>): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await run(process.execPath, ["dist/cli/healthcheck.js"], { cwd: root, env: { PATH: process.env.PATH ?? "", ...env } });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

const processes = useParleyProcesses();

describe("a worker's health port", () => {
  it("answers /healthz, /readyz and /metrics, and only them, and the image's healthcheck passes on it", async () => {
    const { env } = await processes.environment({ ROLE: "worker", WORKER_HEALTH_PORT: String(await freePort()) });
    const worker = processes.start(env);
    await waitForOutput(worker, "worker started", 60_000);
    const base = `http://127.0.0.1:${env.WORKER_HEALTH_PORT}`;

    const healthz = await fetch(`${base}/healthz`);
    expect([healthz.status, await healthz.json()]).toEqual([200, { status: "ok" }]);
    const readyz = await fetch(`${base}/readyz`);
    expect([readyz.status, await readyz.json()]).toEqual([200, { status: "ready" }]);
    const metrics = await fetch(`${base}/metrics`);
    expect([metrics.status, await metrics.text()]).toEqual([200, expect.stringContaining("parley_jobs_in_flight")]);
    // No API on it: a worker's port is for probes (and the metrics' scraper) only.
    expect((await fetch(`${base}/v1/models`)).status).toBe(404);

    expect(await healthcheck(env)).toEqual({ code: 0, stderr: "" });
  });

  it("says unavailable on /readyz when Redis does not answer", async () => {
    const db = { execute: async () => [] } as unknown as Database;
    const redis = { ping: async () => Promise.reject(new Error("connection refused")) } as unknown as Redis;
    const server = await startHealthServer({ port: 0, host: "127.0.0.1", log: createLogger("silent"), routes: healthRoutes({ db, redis }) });
    try {
      const readyz = await fetch(`${server.url}/readyz`);
      expect([readyz.status, await readyz.json()]).toEqual([503, { status: "unavailable" }]);
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    } finally {
      await server.close();
    }
  });
});

describe("the image's healthcheck", () => {
  it("fails, saying why, for a worker with no health port", async () => {
    const result = await healthcheck({ ROLE: "worker", WORKER_HEALTH_PORT: "0" });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("WORKER_HEALTH_PORT=0");
  });

  it("fails when nothing answers on the API's port", async () => {
    const result = await healthcheck({ ROLE: "api", PORT: String(await freePort()) });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/parley healthcheck: /);
  });
});
