import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { connectDatabase, type Database, type DatabaseHandle } from "../../src/db/client.ts";
import { tenants } from "../../src/db/schema.ts";
import { prepared, preparedByKey, preparedSql } from "../../src/db/statements.ts";
import { useDomainDatabase } from "../support/service.ts";

/**
 * Statements built once per handle (src/db/statements.ts), and DATABASE_PREPARED_STATEMENTS: off, nothing
 * is kept on the server as a named prepared statement (a pooler in transaction mode hands each transaction
 * another connection), not even drizzle's named `.prepare(name)`; on, statements are.
 */

// A migrated database of this file's own, with the tenant `test`.
const domain = useDomainDatabase();

const tenantById = prepared((db: Database) => db.select().from(tenants).where(eq(tenants.id, sql.placeholder("id"))).prepare("tenant_by_id"));
const tenantIds = (db: Database) => preparedSql<{ id: string }>(db, "tenant_ids", sql`select id from ${tenants} where id = ${sql.placeholder("id")}`);

/** Runs every way Parley sends a statement on a one-connection pool, and counts what that connection keeps. */
async function keptStatements(handle: DatabaseHandle): Promise<number> {
  const { db } = handle;
  expect(await tenantById(db).execute({ id: "test" })).toEqual([expect.objectContaining({ id: "test" })]);
  expect(await tenantIds(db).execute({ id: "test" })).toEqual([{ id: "test" }]);
  expect(await db.select().from(tenants).where(eq(tenants.id, "test"))).toHaveLength(1);
  await db.transaction(async (tx) => {
    expect(await tx.select().from(tenants).where(eq(tenants.id, sql.placeholder("id"))).prepare("in_tx").execute({ id: "test" })).toHaveLength(1);
  });
  const [row] = await db.execute<{ kept: number }>(sql`select count(*)::int as kept from pg_prepared_statements`);
  return row!.kept;
}

describe("prepared statements", () => {
  it("keeps none on the server when they are off, named prepare included", async () => {
    const handle = connectDatabase(domain.database.url, { max: 1, preparedStatements: false });
    try {
      expect(await keptStatements(handle)).toBe(0);
    } finally {
      await handle.close();
    }
  });

  it("keeps each statement on its connection when they are on", async () => {
    const handle = connectDatabase(domain.database.url, { max: 1 });
    try {
      expect(await keptStatements(handle)).toBeGreaterThanOrEqual(4);
    } finally {
      await handle.close();
    }
  });

  it("builds a statement once per handle and runs it with each call's values", async () => {
    const [one, two] = [connectDatabase(domain.database.url, { max: 1 }), connectDatabase(domain.database.url, { max: 1 })];
    try {
      expect(tenantById(one.db)).toBe(tenantById(one.db));
      expect(tenantById(two.db)).not.toBe(tenantById(one.db));
      expect(await tenantById(one.db).execute({ id: "nobody" })).toEqual([]);
      expect(await tenantById(one.db).execute({ id: "test" })).toHaveLength(1);
    } finally {
      await Promise.all([one.close(), two.close()]);
    }
  });

  it("builds a keyed statement once per handle and key", async () => {
    const handle = connectDatabase(domain.database.url, { max: 1 });
    let builds = 0;
    const firstIds = preparedByKey((db: Database, count: number) => {
      builds++;
      return preparedSql<{ id: string }>(db, `first_tenants_${count}`, sql`select id from ${tenants} order by id limit ${sql.raw(String(count))}`);
    });
    try {
      expect(firstIds(handle.db, 1)).toBe(firstIds(handle.db, 1));
      expect(firstIds(handle.db, 2)).not.toBe(firstIds(handle.db, 1));
      expect(builds).toBe(2);
      expect(await firstIds(handle.db, 1).execute({})).toEqual([{ id: "test" }]);
    } finally {
      await handle.close();
    }
  });
});
