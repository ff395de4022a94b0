import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";

const migrationsFolder = fileURLToPath(new URL("../../migrations", import.meta.url));
// Any fixed number: every Parley process takes the same advisory lock to migrate.
const MIGRATION_LOCK_KEY = 7_215_339_001;

/** Creates the database named in `url` when it does not exist (first start on a fresh server). */
export async function ensureDatabaseExists(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ""));
  if (!name) return;
  const probe = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await probe`select 1`;
    return;
  } catch (err) {
    // 3D000: invalid_catalog_name, the database does not exist. Anything else is a real failure.
    if ((err as { code?: string }).code !== "3D000") throw err;
  } finally {
    await probe.end({ timeout: 1 });
  }
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(`create database "${name.replaceAll('"', '""')}"`);
  } catch (err) {
    // 42P04: duplicate_database, another process created it first.
    if ((err as { code?: string }).code !== "42P04") throw err;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * Applies the committed migrations. Safe to run twice and from many processes
 * at once: drizzle skips what is applied, and an advisory lock makes
 * concurrent starts wait for each other instead of racing.
 */
export async function migrateDatabase(url: string): Promise<void> {
  await ensureDatabaseExists(url);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      await migrate(drizzle(sql), { migrationsFolder });
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}
