import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { newMessageId } from "../../src/domain/ids.ts";
import { ReplyEventLog } from "../../src/streams/reply-events.ts";
import { useTestService } from "../support/service.ts";

/**
 * The lost-reply sweep ends every lost reply, whatever its events hold: a
 * reply whose content Postgres cannot store (NUL, a lone surrogate) is stored
 * with that content made storable, and does not hold up the replies after it.
 */

const ctx = useTestService({ LOST_REPLY_SWEEP_MS: 200, LOST_REPLY_GRACE_MS: 1_000 });
let redis: Redis;
let events: ReplyEventLog;
beforeAll(() => {
  redis = new Redis(inject("redisUrl"));
  events = new ReplyEventLog({ redis, prefix: ctx.service.config.REDIS_PREFIX, ttlSeconds: 600 });
});
afterAll(() => redis?.disconnect());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A conversation whose reply is in flight with no job to run it (as after Redis lost its data), aged past the grace. */
async function lostReply(ageSeconds: number, deltas: string[]): Promise<{ conversationId: string; replyId: string }> {
  const { body: conv } = await ctx.api.post("/conversations", {});
  const replyId = newMessageId();
  const { sql } = ctx.service;
  await sql`
    insert into messages (id, tenant_id, conversation_id, seq, role, content, status, model, created_at)
    values (${replyId}, 'test', ${conv.id}, 1, 'assistant', '', 'in_progress', 'parley-sim-1',
            now() - make_interval(secs => ${ageSeconds}))`;
  await sql`update conversations set last_seq = 1, message_count = 1 where id = ${conv.id}`;
  await events.append(replyId, [{ event: "message.created", data: { id: replyId, status: "queued" } }]);
  for (const content of deltas) await events.appendDelta(replyId, { id: replyId, delta: { content } });
  return { conversationId: conv.id as string, replyId };
}

describe("the lost-reply sweep", () => {
  it("ends a lost reply whose events hold NUL and a lone surrogate, and the replies after it", async () => {
    const poisoned = await lostReply(120, ["before ", "\u0000", " and \ud800 after"]);
    const plain = await lostReply(60, ["fine"]);

    const ended = async (replyId: string) => {
      for (let i = 0; i < 300; i++) {
        const [row] = await ctx.service.sql`select status, content, error from messages where id = ${replyId}`;
        if (row && row.status !== "in_progress") return row;
        await sleep(100);
      }
      throw new Error(`reply ${replyId} was never swept`);
    };
    const poisonedRow = await ended(poisoned.replyId);
    expect(poisonedRow).toMatchObject({ status: "failed", content: "before \uFFFD and \uFFFD after" });
    expect(poisonedRow.error.code).toBe("reply_lost");
    expect(await ended(plain.replyId)).toMatchObject({ status: "failed", content: "fine" });

    // Its followers got the end, and the conversation takes new turns.
    const all = await events.readAfter(poisoned.replyId, null);
    expect(all.slice(-2).map((e) => e.event)).toEqual(["message.failed", "done"]);
    const turn = await ctx.api.post(`/conversations/${poisoned.conversationId}/messages`, { content: "still there?" });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
  }, 60_000);
});
