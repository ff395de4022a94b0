import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newMessageId } from "../../src/domain/ids.ts";
import { numberedTokens, startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, followedContent, readEvents } from "../support/http.ts";
import { startOwnRedis, type OwnRedis } from "../support/redis-server.ts";
import { startTestService, type TestService } from "../support/service.ts";
import { eventually, sleep } from "../support/waiting.ts";

/**
 * The lost-reply sweep never ends a reply that a run is still generating:
 * after Redis restarts empty the run's job is gone, but the run goes on and
 * keeps its reply's liveness mark fresh, so the sweep (running often, with a
 * short grace) leaves it alone and it completes with its whole content. A
 * reply whose job vanished before any worker took it is queued again.
 */

const REPLY = numberedTokens(60).join("");

let upstream: FakeUpstream;
let redis: OwnRedis;
let service: TestService;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  // 60 tokens, 100 ms apart: each reply streams for about 6 s, far past the sweep's grace.
  upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100, replyTokens: 60 });
  redis = await startOwnRedis();
  service = await startTestService({
    REDIS_URL: redis.url,
    UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
    REPLY_EVENTS_OUTAGE_MS: 10_000,
    // The sweep looks often and soon: a reply with no job would be failed within about 2 s.
    LOST_REPLY_SWEEP_MS: 200,
    LOST_REPLY_GRACE_MS: 500,
    REPLY_LIVENESS_MS: 300,
  });
});
afterAll(async () => {
  await service?.stop();
  await redis?.kill();
  await upstream?.close();
});

const replyOf = async (conversationId: string) => {
  const [row] = await service.sql`select id, status, content, error, attempt from messages where conversation_id = ${conversationId} and role = 'assistant'`;
  return row;
};
const ended = (conversationId: string) =>
  eventually(async () => {
    const row = await replyOf(conversationId);
    return row && !["queued", "in_progress"].includes(row.status) ? row : null;
  }, { what: "the reply ends", timeoutMs: 60_000 });

describe("the lost-reply sweep after Redis restarts empty", () => {
  it("leaves a reply whose run goes on alone: it completes with its whole content, as its follower received it", async () => {
    const api = apiClient(`${service.url}/v1`);
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const res = await authedFetch(`${service.url}/v1/conversations/${conv.id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: "a long answer, please", stream: true }),
    });
    expect(res.status).toBe(200);
    const events = readEvents(res).then((r) => r.events);
    // Mid-reply and past the grace: Redis loses the job (and the reply's events).
    await eventually(async () => (await replyOf(conv.id))?.status === "in_progress", { what: "the reply starts", timeoutMs: 20_000 });
    await sleep(1_500);
    await redis.kill();
    await sleep(1_000);
    await redis.start();

    const row = await ended(conv.id);
    expect(row).toMatchObject({ status: "completed", content: REPLY, error: null });
    const seen = await events;
    expect(followedContent(seen)).toBe(REPLY);
    expect(seen.at(-1)?.event).toBe("done");
  }, 90_000);

  it("queues again a queued reply whose job vanished before a worker took it, and it is generated", async () => {
    const api = apiClient(`${service.url}/v1`);
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    // As Redis left it after restarting empty: the turn is stored, its job is not.
    const userId = newMessageId();
    const replyId = newMessageId();
    const { sql } = service;
    await sql`
      insert into messages (id, tenant_id, conversation_id, seq, role, content, status, created_at)
      values (${userId}, 'test', ${conv.id}, 1, 'user', 'hello after the restart', 'completed', now() - interval '5 seconds')`;
    await sql`
      insert into messages (id, tenant_id, conversation_id, seq, role, content, status, model, created_at)
      values (${replyId}, 'test', ${conv.id}, 2, 'assistant', '', 'queued', 'fake-model', now() - interval '5 seconds')`;
    await sql`update conversations set last_seq = 2, message_count = 2 where id = ${conv.id}`;

    const row = await ended(conv.id);
    expect(row).toMatchObject({ id: replyId, status: "completed", content: REPLY, error: null, attempt: 1 });
    // The conversation takes its next turn.
    const next = await api.post(`/conversations/${conv.id}/messages`, { content: "and again" });
    expect(next.status).toBe(201);
    expect(next.body.reply.status).toBe("completed");
  }, 90_000);
});
