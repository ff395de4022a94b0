import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, beforeEach, inject } from "vitest";
import { configSchema, type Config, type UpstreamConfig } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { connectDatabase, type DatabaseHandle } from "../../src/db/client.ts";
import { migrateDatabase } from "../../src/db/migrate.ts";
import { startFakeUpstream, type FakeUpstream } from "./fake-upstream.ts";
import { apiClient } from "./http.ts";
import { seedTestApiKey } from "./keys.ts";
import { startTcpProxyFor, type TcpProxy } from "./tcp-proxy.ts";

const suffix = () => randomBytes(6).toString("hex");

export interface TestDatabase {
  url: string;
  sql: postgres.Sql;
  drop(): Promise<void>;
}

/** A database of its own for one test file, on the shared server; dropped by `drop()`. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = new URL(inject("databaseUrl"));
  const name = `parley_test_${suffix()}`;
  const admin = postgres(serverUrl.toString(), { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 2, onnotice: () => {} });
  return {
    url: url.toString(),
    sql,
    async drop() {
      await sql.end({ timeout: 1 });
      await admin.unsafe(`drop database if exists ${name} with (force)`);
      await admin.end({ timeout: 1 });
    },
  };
}

/**
 * For domain tests without a service: a migrated database of the test file's own, with the tenant
 * `test`, and a drizzle handle on it (two connections); both closed after the file.
 */
export function useDomainDatabase(): { readonly database: TestDatabase; readonly handle: DatabaseHandle } {
  const ctx = {} as { database: TestDatabase; handle: DatabaseHandle };
  beforeAll(async () => {
    ctx.database = await createTestDatabase();
    await migrateDatabase(ctx.database.url);
    ctx.handle = connectDatabase(ctx.database.url, { max: 2 });
    await ctx.database.sql`insert into tenants (id) values ('test')`;
  });
  afterAll(async () => {
    await ctx.handle?.close();
    await ctx.database?.drop();
  });
  return ctx;
}

export interface TestService extends RunningService {
  url: string;
  config: Config;
  /** SQL on the service's own database, for asserting what is stored. */
  sql: postgres.Sql;
}

/**
 * Parley (API and worker in one process) on a random port, with its own
 * database and Redis key prefix. `stop()` shuts it down and drops the database.
 */
type ConfigOverrides = Partial<Omit<Config, "UPSTREAMS">> & { UPSTREAMS?: Partial<UpstreamConfig>[] };

/** The configuration tests run Parley with: fast pacing and retries, a Redis prefix of its own. */
export function testConfig(databaseUrl: string, overrides: ConfigOverrides = {}): Config {
  const config = configSchema.parse({
    PORT: 0,
    HOST: "127.0.0.1",
    DATABASE_URL: databaseUrl,
    REDIS_URL: inject("redisUrl"),
    REDIS_PREFIX: `parley-test-${suffix()}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? "silent",
    SIMULATOR_TTFT_MS: 0,
    SIMULATOR_TOKENS_PER_SECOND: 1000,
    SSE_HEARTBEAT_MS: 1000,
    SHUTDOWN_TIMEOUT_MS: 2000,
    UPSTREAM_RETRY_BASE_MS: 10,
    UPSTREAM_RETRY_MAX_MS: 2000,
    // A small pool: four test files run at once, beside the quick bench's processes (max_connections 100).
    DATABASE_POOL_MAX: 4,
  });
  const { UPSTREAMS, ...rest } = overrides;
  Object.assign(config, rest);
  if (UPSTREAMS) config.UPSTREAMS = configSchema.shape.UPSTREAMS.parse(JSON.stringify(UPSTREAMS));
  return config;
}

/**
 * Parley (API and worker in one process) on a random port, with its own
 * database and Redis key prefix. `stop()` shuts it down and drops the database.
 */
export async function startTestService(overrides: ConfigOverrides = {}): Promise<TestService> {
  const database = await createTestDatabase();
  return startOn(database, database.url, overrides);
}

export interface TestServiceBehindPgProxy extends TestService {
  /** Between Parley and its Postgres. */
  pgProxy: TcpProxy;
}

/**
 * A test service (see startTestService) that reaches its Postgres through a TCP
 * proxy of the test's own, to cut or black-hole; its `sql` goes direct.
 * `stop()` lets traffic through again first, as Parley's shutdown waits on
 * Postgres, and closes the proxy.
 */
export async function startTestServiceBehindPgProxy(overrides: ConfigOverrides = {}): Promise<TestServiceBehindPgProxy> {
  const database = await createTestDatabase();
  const { proxy: pgProxy, url } = await startTcpProxyFor(database.url);
  const service = await startOn(database, url, overrides, async () => {
    pgProxy.heal();
    if (!pgProxy.listening) await pgProxy.restore();
  });
  return {
    ...service,
    pgProxy,
    async stop(timeoutMs?: number) {
      await service.stop(timeoutMs);
      await pgProxy.close();
    },
  };
}

/** Parley on `database`, reaching it at `databaseUrl`; `stop()` runs `beforeStop` first. */
async function startOn(database: TestDatabase, databaseUrl: string, overrides: ConfigOverrides, beforeStop = async () => {}): Promise<TestService> {
  const config = testConfig(databaseUrl, overrides);
  const service = await startService(config, createLogger(config.LOG_LEVEL));
  if (!service.url) throw new Error("the test service has no API");
  await seedTestApiKey(database.sql);
  return {
    url: service.url,
    config,
    sql: database.sql,
    async stop(timeoutMs?: number) {
      await beforeStop();
      await service.stop(timeoutMs);
      await database.drop();
    },
  };
}

/**
 * Starts a test service before the file's tests and stops it after; the
 * returned object is filled in once `beforeAll` has run.
 */
export function useTestService(overrides: Parameters<typeof startTestService>[0] = {}) {
  const ctx = {} as { service: TestService; api: ReturnType<typeof apiClient> };
  beforeAll(async () => {
    ctx.service = await startTestService(overrides);
    ctx.api = apiClient(`${ctx.service.url}/v1`);
  });
  afterAll(() => ctx.service?.stop());
  return ctx;
}

/**
 * A test service whose model `fake-model` (and any `models` given) is served
 * by a fake OpenAI-compatible upstream over real HTTP; the upstream's recorded
 * requests and behaviours are reset before each test. `apiKey` is the
 * upstream's api_key in Parley's config (none by default).
 */
export function useServiceWithFakeUpstream(opts: { models?: string[]; apiKey?: string; overrides?: ConfigOverrides } = {}) {
  const ctx = {} as { upstream: FakeUpstream; service: TestService; api: ReturnType<typeof apiClient> };
  beforeAll(async () => {
    ctx.upstream = await startFakeUpstream();
    ctx.service = await startTestService({
      ...opts.overrides,
      UPSTREAMS: [{ name: "fake", base_url: ctx.upstream.baseURL, api_key: opts.apiKey, models: opts.models ?? ["fake-model"] }],
    });
    ctx.api = apiClient(`${ctx.service.url}/v1`);
  });
  afterAll(async () => {
    await ctx.service?.stop();
    await ctx.upstream?.close();
  });
  beforeEach(() => ctx.upstream.reset());
  return ctx;
}
