import { randomBytes } from "node:crypto";
import type postgres from "postgres";
import { hashApiKey } from "../../src/domain/api-keys.ts";

/** The key every test service accepts, for tenant `test`; stored hashed, as the service stores any key. */
export const TEST_API_KEY = `prly_7e57c0ffee00_${"5eed".repeat(12)}`;
export const TEST_TENANT = "test";

/** Stores TEST_API_KEY in a migrated Parley database (once; a repeat is a no-op). */
export async function seedTestApiKey(sql: postgres.Sql): Promise<void> {
  await sql`insert into tenants (id) values (${TEST_TENANT}) on conflict do nothing`;
  await sql`
    insert into api_keys (id, tenant_id, name, prefix, hash)
    values ('key_01jf3t8vvaf8s9k0d7k6x1s2y3', ${TEST_TENANT}, 'tests', ${TEST_API_KEY.slice(0, 17)}, ${hashApiKey(TEST_API_KEY)})
    on conflict do nothing`;
}

/** Makes a fresh key for `tenant` (creating the tenant) straight in the database; returns the key. */
export async function seedApiKeyFor(sql: postgres.Sql, tenant: string): Promise<string> {
  const prefix = `prly_${randomBytes(6).toString("hex")}`;
  const key = `${prefix}_${randomBytes(24).toString("hex")}`;
  await sql`insert into tenants (id) values (${tenant}) on conflict do nothing`;
  await sql`
    insert into api_keys (id, tenant_id, name, prefix, hash)
    values (${`key_${randomBytes(13).toString("hex").slice(0, 26)}`}, ${tenant}, 'tests', ${prefix}, ${hashApiKey(key)})`;
  return key;
}
