import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { drizzle } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient } from "../support/http.ts";
import { seedTestApiKey, TEST_TENANT } from "../support/keys.ts";
import { createTestDatabase, testConfig, type TestDatabase } from "../support/service.ts";

/**
 * Migration 0006 on a database written before it: conversations and messages
 * stored with jsonb params and the old columns stay readable, are sent
 * upstream as before (plain strings), and take new turns.
 */

const migrations = fileURLToPath(new URL("../../migrations", import.meta.url));
let database: TestDatabase;
let upstream: FakeUpstream;
let service: RunningService;
let api: ReturnType<typeof apiClient>;
const conversationId = "conv_01jf3t8vvaf8s9k0d7k6x1s2y3";

/** The migrations up to and including 0005, in a folder of their own (drizzle applies what its journal lists). */
function migrationsBefore0006(): string {
  const dir = mkdtempSync(join(tmpdir(), "parley-migrations-"));
  cpSync(migrations, dir, { recursive: true });
  const journalPath = join(dir, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { idx: number }[] };
  journal.entries = journal.entries.filter((e) => e.idx <= 5);
  writeFileSync(journalPath, JSON.stringify(journal));
  return dir;
}

beforeAll(async () => {
  database = await createTestDatabase();
  const old = migrationsBefore0006();
  const sql = postgres(database.url, { max: 1, onnotice: () => {} });
  try {
    await migrate(drizzle(sql), { migrationsFolder: old });
    await seedTestApiKey(sql);
    await sql`
      insert into conversations (id, tenant_id, model, system, params, message_count, last_seq)
      values (${conversationId}, ${TEST_TENANT}, 'fake-model', 'Be brief.', ${JSON.stringify({ temperature: 0.3, max_tokens: 50 })}::jsonb, 2, 2)`;
    await sql`
      insert into messages (id, tenant_id, conversation_id, seq, role, content, status, tokens, history_tokens, params, completed_at)
      values
        ('msg_01jf3t8vvaf8s9k0d7k6x1s2y1', ${TEST_TENANT}, ${conversationId}, 1, 'user', 'Old question', 'completed', 6, 6, null, now()),
        ('msg_01jf3t8vvaf8s9k0d7k6x1s2y2', ${TEST_TENANT}, ${conversationId}, 2, 'assistant', 'Old answer', 'completed', 6, 12, ${JSON.stringify({ top_p: 0.9 })}::jsonb, now())`;
  } finally {
    await sql.end({ timeout: 1 });
    rmSync(old, { recursive: true, force: true });
  }
  upstream = await startFakeUpstream();
  // Starting Parley applies 0006 to the old rows.
  const config = testConfig(database.url, { UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }] });
  service = await startService(config, createLogger(config.LOG_LEVEL));
  api = apiClient(`${service.url}/v1`);
});
afterAll(async () => {
  await service?.stop();
  await upstream?.close();
  await database?.drop();
});

describe("migration 0006 on old rows", () => {
  it("turns params into json keeping their values, and adds the new columns empty", async () => {
    const [column] = await database.sql<{ data_type: string }[]>`
      select data_type from information_schema.columns where table_name = 'conversations' and column_name = 'params'`;
    expect(column?.data_type).toBe("json");
    const conversation = await api.get(`/conversations/${conversationId}`);
    expect(conversation.status).toBe(200);
    expect(conversation.body.params).toEqual({ max_tokens: 50, temperature: 0.3 });
  });

  it("shows the old messages with the new fields null", async () => {
    const list = await api.get(`/conversations/${conversationId}/messages`);
    expect(list.status).toBe(200);
    expect(list.body.data).toMatchObject([
      { role: "user", content: "Old question", content_parts: null, name: null, tool_calls: null, tool_call_id: null, reasoning: null, logprobs: null },
      { role: "assistant", content: "Old answer", content_parts: null, tool_calls: null, reasoning: null },
    ]);
  });

  it("takes a new turn, sending the old history as plain strings", async () => {
    const res = await api.post(`/conversations/${conversationId}/messages`, { content: "New question" });
    expect(res.status).toBe(201);
    expect(res.body.reply.status).toBe("completed");
    expect(upstream.requests.at(-1)?.body.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "Old question" },
      { role: "assistant", content: "Old answer" },
      { role: "user", content: "New question" },
    ]);
  });
});
