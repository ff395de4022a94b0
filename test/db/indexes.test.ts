import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrateDatabase } from "../../src/db/migrate.ts";
import { createTestDatabase } from "../support/service.ts";

let database: Awaited<ReturnType<typeof createTestDatabase>>;

beforeAll(async () => {
  database = await createTestDatabase();
  await migrateDatabase(database.url);
  const { sql } = database;
  // 2,000 conversations (one in twenty of them the tenant's), 200 with 50 messages each,
  // so the planner has a real choice to make.
  await sql`insert into tenants (id) values ('default'), ('other')`;
  await sql`
    insert into conversations (id, tenant_id, model, last_seq, message_count)
    select 'conv_' || lpad(g::text, 26, '0'), case when g % 20 = 0 then 'default' else 'other' end, 'm', 50, 50
    from generate_series(1, 2000) g`;
  await sql`
    insert into messages (id, tenant_id, conversation_id, seq, role, content, status)
    select 'msg_' || lpad(c::text, 13, '0') || lpad(s::text, 13, '0'), 'default', 'conv_' || lpad(c::text, 26, '0'),
           s, 'user', 'hello', 'completed'
    from generate_series(1, 200) c, generate_series(1, 50) s`;
  await sql`analyze`;
});
afterAll(() => database?.drop());

async function plan(query: string): Promise<string> {
  const rows = await database.sql.unsafe(`explain ${query}`);
  return rows.map((r) => r["QUERY PLAN"]).join("\n");
}

describe("indexes", () => {
  it("reads the last N messages of a conversation with an index scan", async () => {
    const p = await plan(
      `select * from messages where conversation_id = 'conv_${"1".padStart(26, "0")}' order by seq desc limit 20`,
    );
    expect(p).toMatch(/Index Scan.*messages_conversation_seq_idx/);
  });

  it("lists a tenant's conversations newest first with an index scan", async () => {
    const p = await plan(`select * from conversations where tenant_id = 'default' order by id desc limit 20`);
    expect(p).toMatch(/Index Scan.*conversations_tenant_id_idx/);
  });
});
