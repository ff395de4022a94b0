import type { TestProject } from "vitest/node";
import { buildDist } from "../../scripts/build.ts";

declare module "vitest" {
  export interface ProvidedContext {
    databaseUrl: string;
    redisUrl: string;
  }
}

const LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres";
const LOCAL_REDIS = "redis://127.0.0.1:6379";

/**
 * Where the tests find Postgres and Redis: DATABASE_URL / REDIS_URL when set
 * (CI, this machine); else containers, where a Docker engine answers; else
 * the standard local ports. Each test file then makes its own database and
 * Redis key prefix on that server.
 */
export default async function setup(project: TestProject) {
  // The processes tests spawn run dist/, as `npm start` does: built from this run's src/ every time, so a
  // stale dist/ is never what is tested (an unchanged tree takes ~1 s and rewrites nothing). A failed build
  // fails the run with tsc's message.
  await buildDist();
  let databaseUrl = process.env.DATABASE_URL;
  let redisUrl = process.env.REDIS_URL;
  const stops: (() => Promise<unknown>)[] = [];

  if (!databaseUrl || !redisUrl) {
    const containers = await startContainers(!databaseUrl, !redisUrl);
    if (containers) {
      databaseUrl ??= containers.databaseUrl;
      redisUrl ??= containers.redisUrl;
      stops.push(containers.stop);
    }
  }
  project.provide("databaseUrl", databaseUrl ?? LOCAL_POSTGRES);
  project.provide("redisUrl", redisUrl ?? LOCAL_REDIS);
  return async () => {
    for (const stop of stops) await stop();
  };
}

async function startContainers(postgres: boolean, redis: boolean) {
  // Loaded only here: most runs (CI included) never need it.
  const tc = await import("testcontainers");
  try {
    await tc.getContainerRuntimeClient();
  } catch {
    return null; // no Docker engine: use the local services
  }
  const started: { stop(): Promise<unknown> }[] = [];
  let databaseUrl: string | undefined;
  let redisUrl: string | undefined;
  if (postgres) {
    const pg = await new tc.GenericContainer("postgres:17-alpine")
      .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: "trust" })
      .withExposedPorts(5432)
      .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start();
    started.push(pg);
    databaseUrl = `postgres://postgres@${pg.getHost()}:${pg.getMappedPort(5432)}/postgres`;
  }
  if (redis) {
    const r = await new tc.GenericContainer("redis:7-alpine")
      .withExposedPorts(6379)
      .withWaitStrategy(tc.Wait.forLogMessage(/Ready to accept connections/))
      .start();
    started.push(r);
    redisUrl = `redis://${r.getHost()}:${r.getMappedPort(6379)}`;
  }
  return {
    databaseUrl,
    redisUrl,
    stop: () => Promise.all(started.map((c) => c.stop())),
  };
}
