import { describe, expect, it } from "vitest";
import { newConversationId, newMessageId } from "../../src/domain/ids.ts";
import { finishReply } from "../../src/domain/replies.ts";
import { toMessageResource } from "../../src/domain/resources.ts";
import { useDomainDatabase } from "../support/service.ts";

/**
 * A reply's end and its conversation's `updated_at` are stored in one
 * statement; the touch never waits on a conversation another transaction
 * holds (a delete locks the conversation, then its replies: waiting would
 * invert that order).
 */

const ctx = useDomainDatabase();

async function replyInFlight() {
  const conversationId = newConversationId();
  const [userId, replyId] = [newMessageId(), newMessageId()];
  const { sql } = ctx.database;
  await sql`insert into conversations (id, tenant_id, model, last_seq, message_count, updated_at)
            values (${conversationId}, 'test', 'm', 2, 2, '2026-01-01T00:00:00Z')`;
  await sql`insert into messages (id, tenant_id, conversation_id, seq, role, content, status, tokens, history_tokens)
            values (${userId}, 'test', ${conversationId}, 1, 'user', 'hi', 'completed', 3, 3)`;
  await sql`insert into messages (id, tenant_id, conversation_id, seq, role, content, status, attempt)
            values (${replyId}, 'test', ${conversationId}, 2, 'assistant', '', 'in_progress', 1)`;
  return { conversationId, replyId };
}

const updatedAt = async (conversationId: string) =>
  (await ctx.database.sql<{ updated_at: Date }[]>`select updated_at from conversations where id = ${conversationId}`)[0]!.updated_at;

describe("storing a reply's end", () => {
  it("stores the reply and touches its conversation", async () => {
    const { conversationId, replyId } = await replyInFlight();
    const row = await finishReply(ctx.handle.db, replyId, { status: "completed", content: "hello", finishReason: "stop", usage: null }, { attempt: 1 });
    expect(row).toMatchObject({ id: replyId, status: "completed", content: "hello", historyTokens: 3 + row!.tokens });
    expect((await updatedAt(conversationId)).getTime()).toBeGreaterThan(Date.parse("2026-01-02T00:00:00Z"));
    // Stored once: a second end changes nothing.
    expect(await finishReply(ctx.handle.db, replyId, { status: "failed", content: "", error: { message: "x", type: "server_error", code: "x" } })).toBeNull();
  });

  it("stores each column of the end as given: absent values as SQL null (not json null), an absent context left as it was", async () => {
    const { replyId } = await replyInFlight();
    const toolCalls = [{ id: "call_1", type: "function" as const, function: { name: "f", arguments: "{}" } }];
    const usage = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };
    await ctx.database.sql`update messages set context_messages = 7, context_tokens = 70 where id = ${replyId}`;
    const row = await finishReply(ctx.handle.db, replyId, { status: "completed", content: "", finishReason: "tool_calls", usage, toolCalls }, { attempt: 1 });
    expect(row).toMatchObject({ toolCalls, usage, finishReason: "tool_calls", error: null, logprobs: null, reasoning: null, contextMessages: 7, contextTokens: 70 });
    const [stored] = await ctx.database.sql`select tool_calls is null as no_calls, error is null as no_error, logprobs is null as no_logprobs from messages where id = ${replyId}`;
    expect(stored).toEqual({ no_calls: false, no_error: true, no_logprobs: true });

    const failed = await replyInFlight();
    const error = { message: "x", type: "server_error", code: "x" };
    const ended = await finishReply(ctx.handle.db, failed.replyId, { status: "failed", content: "par", error, logprobs: [{ token: "par" }], context: { messages: 1, tokens: 9 } });
    expect(ended).toMatchObject({ status: "failed", error, usage: null, finishReason: null, toolCalls: null, logprobs: [{ token: "par" }], contextMessages: 1, contextTokens: 9 });
    const [nulls] = await ctx.database.sql`select usage is null as no_usage, tool_calls is null as no_calls from messages where id = ${failed.replyId}`;
    expect(nulls).toEqual({ no_usage: true, no_calls: true });
  });

  it("stores when the first token came with the end, and the message's ttft_ms from it; none given stores null", async () => {
    const { replyId } = await replyInFlight();
    const createdAt = (await ctx.database.sql<{ created_at: Date }[]>`select created_at from messages where id = ${replyId}`)[0]!.created_at;
    const firstTokenAt = new Date(createdAt.getTime() + 321);
    const row = await finishReply(ctx.handle.db, replyId, { status: "cancelled", content: "he", firstTokenAt }, { attempt: 1 });
    expect(row?.firstTokenAt).toEqual(firstTokenAt);
    expect(toMessageResource(row!).ttft_ms).toBe(321);

    const nothing = await replyInFlight();
    const failed = await finishReply(ctx.handle.db, nothing.replyId, { status: "failed", content: "", error: { message: "x", type: "server_error", code: "x" } });
    expect(failed?.firstTokenAt).toBeNull();
    expect(toMessageResource(failed!).ttft_ms).toBeNull();
  });

  it("stores only the newest run's end: a run older than the row's attempt stores nothing, one whose bump a crash took back stores its end", async () => {
    const older = await replyInFlight();
    await ctx.database.sql`update messages set attempt = 2 where id = ${older.replyId}`;
    expect(await finishReply(ctx.handle.db, older.replyId, { status: "completed", content: "late", finishReason: "stop", usage: null }, { attempt: 1 })).toBeNull();
    expect(await finishReply(ctx.handle.db, older.replyId, { status: "completed", content: "newest", finishReason: "stop", usage: null }, { attempt: 2 })).toMatchObject({ content: "newest" });

    // Attempt 1 was handed out, then Postgres lost the bump (committed without waiting for its flush): the row says 0.
    const lost = await replyInFlight();
    await ctx.database.sql`update messages set attempt = 0, status = 'queued' where id = ${lost.replyId}`;
    expect(await finishReply(ctx.handle.db, lost.replyId, { status: "completed", content: "kept", finishReason: "stop", usage: null }, { attempt: 1 })).toMatchObject({ status: "completed", content: "kept" });
  });

  it("does not wait on a conversation another transaction holds: the reply is stored, the touch skipped", async () => {
    const { conversationId, replyId } = await replyInFlight();
    const holder = ctx.database.sql.reserve();
    const held = await holder;
    try {
      await held`begin`;
      await held`select id from conversations where id = ${conversationId} for update`;
      const row = await finishReply(ctx.handle.db, replyId, { status: "cancelled", content: "he" });
      expect(row).toMatchObject({ status: "cancelled", content: "he" });
    } finally {
      await held`rollback`;
      held.release();
    }
    expect((await updatedAt(conversationId)).toISOString()).toBe("2026-01-01T00:00:00.000Z");
  });
});
