import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { newConversationId, newMessageId } from "../../src/domain/ids.ts";
import { startReplyAttempt } from "../../src/domain/replies.ts";
import { useDomainDatabase } from "../support/service.ts";

/**
 * A run's attempt: the greater of the row's next and the job's run count, so a bump that a Postgres crash
 * took back (the statement does not wait for its WAL flush) is never handed out again to a later run; and
 * the asynchronous commit is the statement's own, never its session's.
 */

const ctx = useDomainDatabase();

async function queuedReply(opts: { attempt?: number; status?: string } = {}) {
  const conversationId = newConversationId();
  const replyId = newMessageId();
  const { sql: raw } = ctx.database;
  await raw`insert into conversations (id, tenant_id, model, last_seq, message_count) values (${conversationId}, 'test', 'm', 1, 1)`;
  await raw`insert into messages (id, tenant_id, conversation_id, seq, role, content, status, attempt)
            values (${replyId}, 'test', ${conversationId}, 1, 'assistant', '', ${opts.status ?? "queued"}, ${opts.attempt ?? 0})`;
  return { conversationId, replyId };
}

const storedAttempt = async (replyId: string) =>
  (await ctx.database.sql<{ attempt: number }[]>`select attempt from messages where id = ${replyId}`)[0]!.attempt;

describe("starting a reply's attempt", () => {
  it("returns the reply in progress with its conversation, numbered by the row's next attempt while Redis's count agrees", async () => {
    const { conversationId, replyId } = await queuedReply();
    const started = await startReplyAttempt(ctx.handle.db, "test", replyId, 1);
    expect(started?.reply).toMatchObject({ id: replyId, status: "in_progress", attempt: 1 });
    expect(started?.conversation).toMatchObject({ id: conversationId });
    // Its job taken again (a stalled run): the next number, from either count.
    expect((await startReplyAttempt(ctx.handle.db, "test", replyId, 2))?.reply.attempt).toBe(2);
    // A count behind the row's (the job queued anew after Redis lost it) does not take the row back.
    expect((await startReplyAttempt(ctx.handle.db, "test", replyId, 1))?.reply.attempt).toBe(3);
  });

  it("hands a later run a larger attempt than one a crash took back", async () => {
    const { replyId } = await queuedReply();
    const first = await startReplyAttempt(ctx.handle.db, "test", replyId, 1);
    expect(first?.reply.attempt).toBe(1);
    // As after a Postgres crash before the bump's WAL was flushed: the row is back where it was.
    await ctx.database.sql`update messages set status = 'queued', attempt = 0 where id = ${replyId}`;
    // The job's next run has a larger count in Redis (attemptsStarted), so it cannot share the lost number.
    const second = await startReplyAttempt(ctx.handle.db, "test", replyId, 2);
    expect(second?.reply.attempt).toBe(2);
    expect(await storedAttempt(replyId)).toBe(2);
  });

  it("is null for another tenant's reply or one no longer in flight, and changes nothing", async () => {
    const { replyId } = await queuedReply();
    expect(await startReplyAttempt(ctx.handle.db, "other", replyId, 1)).toBeNull();
    const ended = await queuedReply({ status: "completed", attempt: 1 });
    expect(await startReplyAttempt(ctx.handle.db, "test", ended.replyId, 2)).toBeNull();
    expect([await storedAttempt(replyId), await storedAttempt(ended.replyId)]).toEqual([0, 1]);
  });

  it("commits without waiting for its WAL flush in its own transaction only: the session's next statement commits synchronously", async () => {
    const { replyId } = await queuedReply();
    const setting = sql`select current_setting('synchronous_commit') as value`;
    // Inside a transaction the statement's setting holds to its end, so it can be seen…
    await ctx.handle.db.transaction(async (tx) => {
      expect(await startReplyAttempt(tx, "test", replyId, 1)).not.toBeNull();
      expect((await tx.execute<{ value: string }>(setting))[0]?.value).toBe("off");
    });
    // …and alone (its own implicit transaction) it ends with it: every connection of the pool is back to `on`.
    const other = await queuedReply();
    expect(await startReplyAttempt(ctx.handle.db, "test", other.replyId, 1)).not.toBeNull();
    const values = await Promise.all([1, 2, 3, 4].map(() => ctx.handle.db.execute<{ value: string }>(setting)));
    expect(values.map((rows) => rows[0]?.value)).toEqual(["on", "on", "on", "on"]);
  });
});
