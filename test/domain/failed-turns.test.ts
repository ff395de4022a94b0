import { describe, expect, it } from "vitest";
import { newConversationId, newMessageId } from "../../src/domain/ids.ts";
import { finishReply } from "../../src/domain/replies.ts";
import { useDomainDatabase } from "../support/service.ts";

/**
 * A reply that ends failed with nothing to show takes its turn out of history,
 * whichever path ends it: the worker (fenced by attempt), or the sweep, cancel
 * and a queue failure (no attempt). Only the messages stored with the reply
 * are marked, and the running totals stay what history counts.
 */

const ctx = useDomainDatabase();

/**
 * seq 1 user (10 tokens) and 2 assistant (20), an earlier turn; 3 a user message appended alone (reply: false, 5);
 * then one turn: 4 system (7) and 5 user (11) stored with reply 6, in flight at attempt 1.
 */
async function conversationWithTurnInFlight() {
  const conversationId = newConversationId();
  const ids = Array.from({ length: 6 }, () => newMessageId());
  const { sql } = ctx.database;
  await sql`insert into conversations (id, tenant_id, model, last_seq, message_count) values (${conversationId}, 'test', 'm', 6, 6)`;
  const rows: [number, string, string, number, number, string][] = [
    [1, "user", "completed", 10, 10, "2026-01-01T00:00:00.000Z"],
    [2, "assistant", "completed", 20, 30, "2026-01-01T00:00:00.000Z"],
    [3, "user", "completed", 5, 35, "2026-01-01T00:01:00.000Z"],
    [4, "system", "completed", 7, 42, "2026-01-01T00:02:00.000Z"],
    [5, "user", "completed", 11, 53, "2026-01-01T00:02:00.000Z"],
    [6, "assistant", "in_progress", 0, 53, "2026-01-01T00:02:00.000Z"],
  ];
  for (const [seq, role, status, tokens, historyTokens, createdAt] of rows) {
    await sql`
      insert into messages (id, tenant_id, conversation_id, seq, role, content, status, tokens, history_tokens, attempt, created_at)
      values (${ids[seq - 1]!}, 'test', ${conversationId}, ${seq}, ${role}, ${role === "assistant" && status !== "completed" ? "" : `m${seq}`},
              ${status}, ${tokens}, ${historyTokens}, ${seq === 6 ? 1 : 0}, ${createdAt})`;
  }
  return { conversationId, replyId: ids[5]! };
}

const stored = (conversationId: string) =>
  ctx.database.sql<{ seq: number; status: string; error: any; history_tokens: string }[]>`
    select seq, status, error, history_tokens from messages where conversation_id = ${conversationId} order by seq`;

const error = { message: "The reply was lost.", type: "server_error", code: "reply_lost" };

describe("a reply that failed before producing anything", () => {
  it("marks only its turn's messages and takes them out of the running totals, when the sweep ends it (no attempt)", async () => {
    const { conversationId, replyId } = await conversationWithTurnInFlight();
    const row = await finishReply(ctx.handle.db, replyId, { status: "failed", content: "", error });
    expect(row).toMatchObject({ status: "failed", historyTokens: 35 });
    const rows = await stored(conversationId);
    expect(rows.map((r) => [r.seq, r.status, Number(r.history_tokens)])).toEqual([
      [1, "completed", 10],
      [2, "completed", 30],
      [3, "completed", 35],
      [4, "failed", 35],
      [5, "failed", 35],
      [6, "failed", 35],
    ]);
    expect(rows[3]!.error).toMatchObject({ code: "reply_failed", type: "server_error" });
    expect(rows[3]!.error.message).toContain(replyId);
    expect(rows[2]!.error).toBeNull();
  });

  it("changes nothing when the run that ends it was replaced (attempt fence)", async () => {
    const { conversationId, replyId } = await conversationWithTurnInFlight();
    expect(await finishReply(ctx.handle.db, replyId, { status: "failed", content: "", error }, { attempt: 0 })).toBeNull();
    expect((await stored(conversationId)).map((r) => r.status)).toEqual(["completed", "completed", "completed", "completed", "completed", "in_progress"]);
    expect(await finishReply(ctx.handle.db, replyId, { status: "failed", content: "", error }, { attempt: 1 })).toMatchObject({ historyTokens: 35 });
  });

  it("leaves the turn in history when the reply had said something or called a tool, or was cancelled", async () => {
    for (const outcome of [
      { status: "failed" as const, content: "half", error },
      { status: "failed" as const, content: "", error, toolCalls: [{ id: "call_1", type: "function" as const, function: { name: "f", arguments: "{}" } }] },
      { status: "cancelled" as const, content: "" },
    ]) {
      const { conversationId, replyId } = await conversationWithTurnInFlight();
      await finishReply(ctx.handle.db, replyId, outcome);
      const rows = await stored(conversationId);
      expect(rows.slice(0, 5).map((r) => [r.status, Number(r.history_tokens)])).toEqual([
        ["completed", 10],
        ["completed", 30],
        ["completed", 35],
        ["completed", 42],
        ["completed", 53],
      ]);
    }
  });
});
