import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { afterAll, describe, expect, inject, it } from "vitest";
import { migrateDatabase } from "../../src/db/migrate.ts";

const name = `parley_test_${randomBytes(6).toString("hex")}`;
const server = inject("databaseUrl");
const url = Object.assign(new URL(server), { pathname: `/${name}` }).toString();

afterAll(async () => {
  const admin = postgres(server, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${name} with (force)`);
  await admin.end();
});

describe("migrations", () => {
  it("create a missing database, and applying them again (even concurrently) changes nothing", async () => {
    await migrateDatabase(url);
    await Promise.all([migrateDatabase(url), migrateDatabase(url), migrateDatabase(url)]);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const tables = await sql<{ table_name: string }[]>`
        select table_name from information_schema.tables where table_schema = 'public' order by table_name`;
      expect(tables.map((t) => t.table_name)).toEqual(["api_keys", "conversations", "idempotency_keys", "messages", "responses", "tenants"]);
      const [applied] = await sql`select count(*)::int as n from drizzle.__drizzle_migrations`;
      expect(applied?.n).toBeGreaterThan(0);
      const indexes = await sql<{ indexname: string }[]>`select indexname from pg_indexes where tablename = 'messages'`;
      expect(indexes.map((i) => i.indexname)).toEqual(
        expect.arrayContaining(["messages_conversation_seq_idx", "messages_one_reply_in_flight_idx"]),
      );
    } finally {
      await sql.end();
    }
  });
});
