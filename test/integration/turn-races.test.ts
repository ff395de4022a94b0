import { setTimeout as sleep } from "node:timers/promises";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { TEST_TENANT } from "../support/keys.ts";
import { useTestService, type TestService } from "../support/service.ts";

// A turn is read first and written in one statement that requires the conversation's row unchanged; these
// are the races that statement meets, each answered as the locked path would.
const ctx = useTestService({ RATE_LIMIT_REQUESTS: 10_000 });
let redis: Redis;
beforeAll(() => {
  redis = new Redis(inject("redisUrl"));
});
afterAll(() => redis?.quit());

describe("turns racing on one conversation", () => {
  it("stores every one of many concurrent appends without a reply, with distinct seqs and a running token total", async () => {
    const { body: conv } = await ctx.api.post("/conversations", {});
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ctx.api.post(`/conversations/${conv.id}/messages`, { content: `note ${i}`, reply: false })),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(201));
    const rows = await ctx.service.sql<{ seq: number; tokens: number; history_tokens: string }[]>`
      select seq, tokens, history_tokens from messages where conversation_id = ${conv.id} order by seq`;
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    let running = 0;
    for (const row of rows) {
      running += row.tokens;
      expect(Number(row.history_tokens)).toBe(running);
    }
    const [stored] = await ctx.service.sql`select last_seq, message_count from conversations where id = ${conv.id}`;
    expect(stored).toMatchObject({ last_seq: 20, message_count: 20 });
  });

  it("takes one of many concurrent turns with a reply, answers the rest 409, and keeps no slot for them", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { model: "parley-sim-1", params: { simulate: { ttft_ms: 60_000 } } });
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ctx.api.post(`/conversations/${conv.id}/messages`, { content: `ask ${i}`, wait: false })),
    );
    const accepted = answers.filter((a) => a.status === 202);
    expect(accepted).toHaveLength(1);
    for (const a of answers.filter((a) => a.status !== 202)) {
      expect(a.status).toBe(409);
      expect(a.body.error.code).toBe("conversation_busy");
    }
    const [counts] = await ctx.service.sql`
      select count(*)::int as n, count(*) filter (where status in ('queued', 'in_progress'))::int as in_flight
      from messages where conversation_id = ${conv.id}`;
    expect(counts).toMatchObject({ n: 2, in_flight: 1 });
    const slots = await redis.zrange(`${ctx.service.config.REDIS_PREFIX}:reply-slots:${TEST_TENANT}`, "0", "-1");
    expect(slots).toEqual([accepted[0]!.body.reply.id]);
    await ctx.api.post(`/conversations/${conv.id}/messages/${accepted[0]!.body.reply.id}/cancel`);
  });

  it("stores a turn whose conversation changed between its read and its write, from the row as it is then", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { model: "parley-sim-1", params: { simulate: { ttft_ms: 60_000 } } });
    await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "before", reply: false });
    // Another writer holds the row (and changes it) while the turn is under way: the turn's read passes,
    // its write waits on the row lock and finds the row changed once the writer commits.
    const reserved = await ctx.service.sql.reserve();
    try {
      await reserved`begin`;
      await reserved`update conversations set title = 'renamed', last_seq = last_seq + 1, message_count = message_count + 1 where id = ${conv.id}`;
      await reserved`
        insert into messages (id, tenant_id, conversation_id, seq, role, content, status, tokens, history_tokens)
        select 'msg_01aaaaaaaaaaaaaaaaaaaaaaaa', tenant_id, id, last_seq, 'user', 'meanwhile', 'completed', 7,
               (select history_tokens from messages where conversation_id = ${conv.id} order by seq desc limit 1) + 7
        from conversations where id = ${conv.id}`;
      const turn = ctx.api.post(`/conversations/${conv.id}/messages`, { content: "after", wait: false });
      await waitForLockWait(ctx.service.sql);
      await reserved`commit`;
      const answer = await turn;
      expect(answer.status).toBe(202);
      expect(answer.body.message.seq).toBe(3);
      expect(answer.body.reply.seq).toBe(4);
      const [newest] = await ctx.service.sql<{ history_tokens: string }[]>`
        select history_tokens from messages where id = ${answer.body.message.id}`;
      const [meanwhile] = await ctx.service.sql<{ history_tokens: string }[]>`
        select history_tokens from messages where id = 'msg_01aaaaaaaaaaaaaaaaaaaaaaaa'`;
      expect(Number(newest!.history_tokens)).toBe(Number(meanwhile!.history_tokens) + answer.body.message.tokens);
      const slots = await redis.zrange(`${ctx.service.config.REDIS_PREFIX}:reply-slots:${TEST_TENANT}`, "0", "-1");
      expect(slots).toContain(answer.body.reply.id);
      await ctx.api.post(`/conversations/${conv.id}/messages/${answer.body.reply.id}/cancel`);
    } finally {
      await reserved`rollback`.catch(() => {});
      reserved.release();
    }
  });
});

/** Until some session of this database waits on a lock (the turn's write, behind the test's own). */
async function waitForLockWait(sql: TestService["sql"]): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const [row] = await sql`select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`;
    if (row!.n > 0) return;
    await sleep(25);
  }
  throw new Error("the turn never waited on the conversation's row");
}
