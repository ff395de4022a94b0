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

  it("finds a conversation's reply in flight with its partial index, even in a prepared statement's generic plan", async () => {
    const { sql: generic } = await import("drizzle-orm");
    const { PgDialect } = await import("drizzle-orm/pg-core");
    const { replyInFlightSql } = await import("../../src/domain/replies.ts");
    // The condition as Parley writes it, rendered to SQL text: its statuses must be constants, not parameters.
    const rendered = new PgDialect().sqlToQuery(generic`${replyInFlightSql}`);
    expect(rendered.params).toEqual([]);
    const reserved = await database.sql.reserve();
    try {
      await reserved.unsafe("set plan_cache_mode = force_generic_plan");
      await reserved.unsafe(`prepare in_flight(text) as select id from messages where conversation_id = $1 and ${rendered.sql} limit 1`);
      const rows = await reserved.unsafe("explain execute in_flight('conv_1')");
      expect(rows.map((r) => r["QUERY PLAN"]).join("\n")).toMatch(/messages_one_reply_in_flight_idx/);
      // Bound statuses would not be matched against the index's predicate in a generic plan.
      await reserved.unsafe("prepare bound(text, text, text) as select id from messages where conversation_id = $1 and status in ($2, $3) limit 1");
      const boundRows = await reserved.unsafe("explain execute bound('conv_1', 'queued', 'in_progress')");
      expect(boundRows.map((r) => r["QUERY PLAN"]).join("\n")).not.toMatch(/messages_one_reply_in_flight_idx/);
    } finally {
      reserved.release();
    }
  });

  it("finds where a turn's history starts with one index probe and no sort, even in a prepared statement's generic plan", async () => {
    const reserved = await database.sql.reserve();
    try {
      await reserved.unsafe("set plan_cache_mode = force_generic_plan");
      // The history window's start (history.ts): the first message, in (history_tokens, seq) order, from a running total on.
      await reserved.unsafe(
        "prepare history_start(text, int, bigint) as select seq from messages where conversation_id = $1 and seq < $2 and history_tokens >= $3 order by history_tokens, seq limit 1",
      );
      const rows = await reserved.unsafe(`explain execute history_start('conv_${"1".padStart(26, "0")}', 51, 0)`);
      const p = rows.map((r) => r["QUERY PLAN"]).join("\n");
      expect(p).toMatch(/Index (Only )?Scan.*messages_conversation_history_tokens_seq_idx/);
      expect(p).not.toMatch(/Sort/);
    } finally {
      reserved.release();
    }
  });

  it("lists a tenant's conversations newest first with an index scan", async () => {
    const p = await plan(`select * from conversations where tenant_id = 'default' order by id desc limit 20`);
    expect(p).toMatch(/Index Scan.*conversations_tenant_id_idx/);
  });
});
