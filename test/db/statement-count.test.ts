import { eq, sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { connectDatabase, type StatementCounter } from "../../src/db/client.ts";
import { tenants } from "../../src/db/schema.ts";
import { useDomainDatabase } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/**
 * The pool's statements in flight (parley_db_queries_in_flight): postgres.js shows no pool state, so
 * connectDatabase counts each statement drizzle sends from its sending to its answer, in transactions
 * too, with prepared statements on or off, and results are what they were without the count.
 */

// A migrated database of this file's own, with the tenant `test`.
const domain = useDomainDatabase();

function counter(): StatementCounter & { now: number; total: number } {
  const c = {
    now: 0,
    total: 0,
    started: () => void (c.now++, c.total++),
    ended: () => void c.now--,
  };
  return c;
}

describe.each([true, false])("statements in flight (prepared statements %s)", (preparedStatements) => {
  it("counts a statement while it runs, in and out of transactions, and failed ones end too", async () => {
    const count = counter();
    const handle = connectDatabase(domain.database.url, { max: 2, preparedStatements, statements: count });
    try {
      const { db } = handle;
      expect(handle.maxConnections).toBe(2);
      // drizzle sends a query once it is awaited (then'd): started here, waited for below.
      const sleeping = db.execute(sql`select pg_sleep(0.5)`).then(() => "slept");
      await eventually(async () => count.now === 1, { what: "the sleeping statement counted", timeoutMs: 10_000, everyMs: 10 });
      expect(await sleeping).toBe("slept");
      expect(count.now).toBe(0);

      expect(await db.select().from(tenants).where(eq(tenants.id, "test"))).toEqual([expect.objectContaining({ id: "test" })]);
      await db.transaction(async (tx) => {
        expect(await tx.select({ id: tenants.id }).from(tenants)).toEqual([{ id: "test" }]);
        expect(count.now).toBe(0);
      });
      await expect(db.execute(sql`select 1/0`)).rejects.toThrow();
      expect(count.now).toBe(0);
      // The select, begin, the select in it, commit, the failed one, and the sleep: every one was counted.
      expect(count.total).toBeGreaterThanOrEqual(4);
    } finally {
      await handle.close();
    }
  });
});
