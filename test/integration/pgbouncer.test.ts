import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { apiClient } from "../support/http.ts";
import { seedTestApiKey } from "../support/keys.ts";
import { findPgBouncer, startPgBouncer, type PgBouncer } from "../support/pgbouncer.ts";
import { freePort, useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";

/**
 * Parley behind a real PgBouncer in transaction mode (Debian's `pgbouncer`), on a database that does not
 * exist yet: migrations go over the direct DATABASE_MIGRATION_URL, everything else through the pooler.
 * Without the binary the file is skipped, except in CI (`CI` set), where it must run.
 */
const binary = findPgBouncer();
if (!binary && process.env.CI) throw new Error("pgbouncer is not installed (apt-get install -y pgbouncer); CI must run this file");
if (!binary) console.warn("test/integration/pgbouncer.test.ts skipped: no pgbouncer binary (apt-get install -y pgbouncer)");

const serverUrl = inject("databaseUrl");
const name = `parley_test_${randomBytes(6).toString("hex")}`;
const direct = Object.assign(new URL(serverUrl), { pathname: `/${name}` }).toString();
const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
const processes = useParleyProcesses();
let bouncer: PgBouncer | undefined;

beforeAll(async () => {
  if (binary) bouncer = await startPgBouncer(binary, serverUrl);
});
afterAll(async () => {
  await bouncer?.stop();
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.end({ timeout: 1 });
});

describe.skipIf(!binary)("behind PgBouncer in transaction mode", () => {
  it("several instances start at once on a fresh database, serve a turn, and leave no advisory lock", { timeout: 120_000 }, async () => {
    const shared = {
      DATABASE_URL: bouncer!.url(name),
      DATABASE_MIGRATION_URL: direct,
      DATABASE_PREPARED_STATEMENTS: "false",
      DATABASE_STARTUP_PARAMETERS: "false",
      DATABASE_POOL_MAX: "3",
      REDIS_URL: inject("redisUrl"),
      REDIS_PREFIX: `parley-test-${randomBytes(4).toString("hex")}`,
      HOST: "127.0.0.1",
      SIMULATOR_TTFT_MS: "0",
      SIMULATOR_TOKENS_PER_SECOND: "200",
    };
    const api = async (): Promise<{ p: ParleyProcess; port: string }> => {
      const port = String(await freePort());
      return { p: processes.start({ ...shared, ROLE: "api", PORT: port }), port };
    };
    const apis = [await api(), await api()];
    const workers = [0, 1].map(() => processes.start({ ...shared, ROLE: "worker", PORT: "0" }));
    await Promise.all([
      ...apis.map(({ p }) => waitForOutput(p, "api listening", 90_000)),
      ...workers.map((p) => waitForOutput(p, "worker started", 90_000)),
    ]);

    const sql = postgres(direct, { max: 1, onnotice: () => {} });
    try {
      await seedTestApiKey(sql);
      // Each API serves the other's conversation: every statement went through pooled connections.
      const [one, two] = apis.map(({ port }) => apiClient(`http://127.0.0.1:${port}/v1`));
      const { status, body: conv } = await one!.post("/conversations", { system: "Be kind." });
      expect(status).toBe(201);
      const turn = await two!.post(`/conversations/${conv.id}/messages`, { content: "hello through the pooler" });
      expect(turn.status).toBe(201);
      expect(turn.body.reply.status).toBe("completed");
      expect(turn.body.reply.content.length).toBeGreaterThan(0);
      expect((await one!.get(`/conversations/${conv.id}/messages`)).body.data).toHaveLength(2);

      const [locks] = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and database = (select oid from pg_database where datname = ${name})`;
      expect(locks!.n).toBe(0);

      // A later start migrating through the pooler itself (no direct URL) is not held up, and holds nothing after.
      const port = String(await freePort());
      const late = processes.start({ ...shared, DATABASE_MIGRATION_URL: "", ROLE: "api", PORT: port });
      await waitForOutput(late, "api listening", 60_000);
      const [after] = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_locks
        where locktype = 'advisory' and database = (select oid from pg_database where datname = ${name})`;
      expect(after!.n).toBe(0);
      const names = await sql<{ application_name: string }[]>`
        select distinct application_name from pg_stat_activity where datname = ${name} and application_name like 'parley-%'`;
      expect(names.map((n) => n.application_name)).toEqual(
        expect.arrayContaining([expect.stringMatching(/^parley-(api|worker|migrate)-.+-\d+$/)]),
      );
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("says what to do when the database is missing and only the pooler's URL is given", { timeout: 60_000 }, async () => {
    const p = processes.start({
      DATABASE_URL: bouncer!.url(`parley_test_missing_${randomBytes(4).toString("hex")}`),
      DATABASE_PREPARED_STATEMENTS: "false",
      DATABASE_STARTUP_PARAMETERS: "false",
      REDIS_URL: inject("redisUrl"),
      HOST: "127.0.0.1",
      PORT: String(await freePort()),
    });
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/08P01/);
    expect(p.output()).toMatch(/DATABASE_MIGRATION_URL/);
  });

  it("stops at start with one line naming DATABASE_STARTUP_PARAMETERS when the pooler refuses them", { timeout: 60_000 }, async () => {
    const p = processes.start({
      DATABASE_URL: bouncer!.url(name),
      DATABASE_MIGRATION_URL: direct,
      DATABASE_PREPARED_STATEMENTS: "false",
      REDIS_URL: inject("redisUrl"),
      HOST: "127.0.0.1",
      PORT: String(await freePort()),
    });
    expect(await p.exited).toBe(1);
    expect(p.output()).toMatch(/unsupported startup parameter.*DATABASE_STARTUP_PARAMETERS=false/);
  });
});
