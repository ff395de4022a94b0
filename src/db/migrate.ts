import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { ConfigError } from "../config.ts";

const migrationsFolder = fileURLToPath(new URL("../../migrations", import.meta.url));
// Any fixed number: every Parley process takes the same advisory lock to migrate.
const MIGRATION_LOCK_KEY = 7_215_339_001;

/** A setting to change, not a fault: main prints it as one line, as it does a bad variable. */
export class DatabaseUnreachableError extends ConfigError {
  override name = "DatabaseUnreachableError";
}

/** Options of the migration's own one-connection pool. */
export interface MigrationOptions {
  applicationName?: string;
}

/**
 * A one-connection pool that works through a pooler in transaction mode as well as directly: statements
 * unnamed (nothing kept on a connection), no startup parameter besides the name (PgBouncer refuses others).
 */
function migrationPool(url: string, opts: MigrationOptions, extra: postgres.Options<{}> = {}) {
  return postgres(url, {
    max: 1,
    prepare: false,
    onnotice: () => {},
    connection: { application_name: opts.applicationName ?? "parley-migrate" },
    ...extra,
  });
}

/**
 * Creates the database named in `url` when it does not exist (first start on a fresh server). Only a direct
 * connection can tell: a pooler such as PgBouncer answers a missing database with 08P01 (protocol violation),
 * which is reported as such, saying what to do, instead of a raw code.
 */
export async function ensureDatabaseExists(url: string, opts: MigrationOptions = {}): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
  if (!name) return;
  const probe = migrationPool(url, opts, { connect_timeout: 10 });
  try {
    await probe`select 1`;
    return;
  } catch (err) {
    const { code, message } = err as { code?: string; message?: string };
    if (code === "08P01") {
      throw new DatabaseUnreachableError(
        `database "${name}" at ${target.host} refused the connection with 08P01 ("${message}"): that is how a pooler ` +
          `such as PgBouncer reports a database it cannot reach or that does not exist. Create the database, or set ` +
          `DATABASE_MIGRATION_URL to a direct URL of the Postgres server so Parley creates it and migrates over it.`,
        { cause: err },
      );
    }
    // 3D000: invalid_catalog_name, the database does not exist. Anything else is a real failure.
    if (code !== "3D000") throw err;
  } finally {
    await probe.end({ timeout: 1 });
  }
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = migrationPool(admin.toString(), opts);
  try {
    await sql.unsafe(`create database "${name.replaceAll('"', '""')}"`);
  } catch (err) {
    // Another process created it first: 42P04 duplicate_database, or 23505 when both inserted into pg_database at once.
    const code = (err as { code?: string }).code;
    if (code !== "42P04" && code !== "23505") throw err;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * Applies the committed migrations. Safe to run twice and from many processes at once: drizzle skips what
 * is applied, and concurrent starts wait for each other on an advisory lock instead of racing. The lock is
 * transaction-scoped and the whole migration is that one transaction, so the commit (or a dropped
 * connection) always releases it: behind a pooler in transaction mode nothing stays on a pooled connection.
 */
export async function migrateDatabase(url: string, opts: MigrationOptions = {}): Promise<void> {
  await ensureDatabaseExists(url, opts);
  const pool = migrationPool(url, opts);
  try {
    await pool.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`;
      // drizzle's migrator opens a transaction of its own with `begin` and sets its type parsers on the
      // client's `options`: inside ours, that transaction is a savepoint, and the options are the pool's.
      const client = new Proxy(tx, {
        get: (target, prop, receiver) =>
          prop === "begin" ? target.savepoint : prop === "options" ? pool.options : Reflect.get(target, prop, receiver),
      }) as unknown as postgres.Sql;
      await migrate(drizzle(client), { migrationsFolder });
    });
  } finally {
    await pool.end({ timeout: 5 });
  }
}
