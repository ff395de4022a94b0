import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.ts";
import { connectDatabase, type DatabaseHandle } from "../../src/db/client.ts";
import { databaseApplicationName, databasePoolOptions, migrationTarget } from "../../src/db/settings.ts";
import { createTestDatabase, type TestDatabase } from "../support/service.ts";

/** The DATABASE_* pool settings, as a Postgres session sees them. */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(() => database?.drop());

async function session(handle: DatabaseHandle) {
  const [row] = await handle.db.execute<{ name: string; statement_timeout: string; pid: number }>(
    sql`select current_setting('application_name') as name, current_setting('statement_timeout') as statement_timeout, pg_backend_pid() as pid`,
  );
  return row!;
}

describe("database pool settings", () => {
  it("names each process's connections by role, host and pid, unless a name is set", () => {
    expect(databaseApplicationName({}, "worker")).toMatch(new RegExp(`^parley-worker-.+-${process.pid}$`));
    expect(databaseApplicationName({}, "api", "web-7f9c", 42)).toBe("parley-api-web-7f9c-42");
    expect(databaseApplicationName({ DATABASE_APPLICATION_NAME: "billing-parley" }, "api")).toBe("billing-parley");
  });

  it("cuts a long hostname, not the pid, to fit Postgres's 63 bytes", () => {
    const name = databaseApplicationName({}, "worker", `parley-worker-deployment-${"x".repeat(60)}`, 1234567);
    expect(name).toHaveLength(63);
    expect(name).toMatch(/^parley-worker-parley-worker-deployment-x+-1234567$/);
  });

  it("reads the settings, leaving unset ones to postgres.js, and migrates over the direct URL when given", () => {
    const config = loadConfig({
      DATABASE_URL: "postgres://u@pooler:6432/parley",
      DATABASE_MIGRATION_URL: "postgres://u@db:5432/parley",
      DATABASE_POOL_MAX: "4",
      DATABASE_IDLE_TIMEOUT_S: "30",
      DATABASE_PREPARED_STATEMENTS: "false",
      DATABASE_STARTUP_PARAMETERS: "false",
      MIGRATE_ON_START: "false",
      ROLE: "worker",
    });
    expect(config.MIGRATE_ON_START).toBe(false);
    expect(databasePoolOptions(config)).toMatchObject({
      max: 4,
      idleTimeoutS: 30,
      maxLifetimeS: undefined,
      preparedStatements: false,
      startupParameters: false,
      applicationName: expect.stringMatching(/^parley-worker-/),
    });
    expect(migrationTarget(config).url).toBe("postgres://u@db:5432/parley");
    const defaults = loadConfig({});
    expect(databasePoolOptions(defaults)).toMatchObject({ max: undefined, idleTimeoutS: 60, startupParameters: true });
    expect(migrationTarget(defaults).url).toBe(defaults.DATABASE_URL);
    expect(defaults.MIGRATE_ON_START).toBe(true);
  });

  it("sends the name always, and the timeouts only as startup parameters when asked", async () => {
    const sent = connectDatabase(database.url, { max: 1, applicationName: "parley-test-sent" });
    const withheld = connectDatabase(database.url, { max: 1, applicationName: "parley-test-withheld", startupParameters: false });
    try {
      expect(await session(sent)).toMatchObject({ name: "parley-test-sent", statement_timeout: "10s" });
      expect(await session(withheld)).toMatchObject({ name: "parley-test-withheld", statement_timeout: "0" });
    } finally {
      await Promise.all([sent.close(), withheld.close()]);
    }
  });

  it("gives an idle connection back to the server after DATABASE_IDLE_TIMEOUT_S", async () => {
    const handle = connectDatabase(database.url, { max: 1, idleTimeoutS: 1 });
    try {
      const { pid } = await session(handle);
      let alive = true;
      while (alive) {
        await new Promise((r) => setTimeout(r, 200));
        const [row] = await database.sql<{ alive: boolean }[]>`select exists (select from pg_stat_activity where pid = ${pid}) as alive`;
        alive = row!.alive;
      }
      expect((await session(handle)).pid).not.toBe(pid);
    } finally {
      await handle.close();
    }
  });
});
