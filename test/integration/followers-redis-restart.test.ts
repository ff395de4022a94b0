import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, followedContent, postForEvents, readEvents } from "../support/http.ts";
import { startOwnRedis, type OwnRedis } from "../support/redis-server.ts";
import { startTestService, type TestService } from "../support/service.ts";
import { eventually, sleep } from "../support/waiting.ts";

/**
 * A Redis of the test's own is killed (-9) mid-reply and started again, empty,
 * on the same port about 2 s later. Whatever became of the replies' events,
 * every follower ends, with the reply's final state as Postgres stores it.
 */

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(() => upstream?.close());

/** Parley (API and worker) on a Redis of its own and a database of its own, for one describe block. */
function useServiceOnOwnRedis(overrides: Parameters<typeof startTestService>[0] = {}) {
  const ctx = {} as { redis: OwnRedis; service: TestService; api: ReturnType<typeof apiClient> };
  beforeAll(async () => {
    ctx.redis = await startOwnRedis();
    ctx.service = await startTestService({
      REDIS_URL: ctx.redis.url,
      UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
      REPLY_STALL_CHECK_MS: 500,
      LOST_REPLY_SWEEP_MS: 300,
      LOST_REPLY_GRACE_MS: 1_000,
      WORKER_LOCK_MS: 1_500,
      WORKER_STALLED_CHECK_MS: 500,
      ...overrides,
    });
    ctx.api = apiClient(`${ctx.service.url}/v1`);
  });
  afterAll(async () => {
    // Stopped with its Redis there, as closing its connections waits for Redis to answer.
    if (ctx.redis && !ctx.redis.running) await ctx.redis.start();
    await ctx.service?.stop(1_000);
    await ctx.redis?.kill();
  });
  return ctx;
}

/** A streamed append, an SSE follower of its reply and a waiting append, each in flight with content streamed. */
async function followersInFlight(ctx: ReturnType<typeof useServiceOnOwnRedis>) {
  const { api, service } = ctx;
  const base = `${service.url}/v1/conversations`;
  const { body: streamedConv } = await api.post("/conversations", { model: "fake-model" });
  const { body: waitedConv } = await api.post("/conversations", { model: "fake-model" });
  const streaming = postForEvents(`${base}/${streamedConv.id}/messages`, { content: "stream it", stream: true });
  const waiting = api.post(`/conversations/${waitedConv.id}/messages`, { content: "wait for it", wait: true });
  const replyOf = async (conversationId: string) => {
    const id = await eventually(async () => {
      const { body } = await api.get(`/conversations/${conversationId}/messages`);
      return body.data?.find((m: { role: string }) => m.role === "assistant")?.id as string | undefined;
    }, { what: "the reply is stored", timeoutMs: 30_000 });
    // Generating: one message shows the content so far.
    await eventually(async () => ((await api.get(`/conversations/${conversationId}/messages/${id}`)).body.content ? true : null), { what: "the reply streams", timeoutMs: 30_000 });
    return id;
  };
  const streamedReply = await replyOf(streamedConv.id);
  const waitedReply = await replyOf(waitedConv.id);
  const following = authedFetch(`${base}/${streamedConv.id}/messages/${streamedReply}/events`).then(readEvents);
  await sleep(200);
  const stored = async (id: string) =>
    eventually(async () => {
      const [row] = await service.sql`select status, content from messages where id = ${id}`;
      return row && row.status !== "in_progress" && row.status !== "queued" ? row : null;
    }, { what: "the reply ended in Postgres", timeoutMs: 30_000 });

  /** Every follower has ended with its reply's end as Postgres stores it, nothing delivered twice. */
  async function expectEndedAsStored(opts: { deltasMatchStored: boolean }): Promise<void> {
    const [streamed, followed, waited] = await Promise.all([streaming, following, waiting]);
    const streamedRow = await stored(streamedReply);
    const waitedRow = await stored(waitedReply);
    for (const { events } of [streamed, followed]) {
      expect(events.at(-1)?.event).toBe("done");
      const end = events.at(-2)!;
      expect(end.event).toBe(`message.${streamedRow.status}`);
      expect(JSON.parse(end.data)).toMatchObject({ id: streamedReply, status: streamedRow.status, content: streamedRow.content });
      if (opts.deltasMatchStored) expect(streamedRow.content.startsWith(followedContent(events))).toBe(true);
      const ids = events.map((e) => e.id!);
      expect(new Set(ids).size).toBe(ids.length);
    }
    expect(waited.status).toBe(201);
    expect(waited.body.reply).toMatchObject({ id: waitedReply, status: waitedRow.status, content: waitedRow.content });
  }
  return { streamedConv: streamedConv.id as string, expectEndedAsStored };
}

describe("followers across a Redis restart", () => {
  const ctx = useServiceOnOwnRedis();

  it("a streamed append, an SSE follower and a waiting append all end with the reply's stored end", async () => {
    upstream.setBehaviour({ kind: "ok", replyTokens: 80, tokenDelayMs: 50 }); // about 4 s of tokens
    const inFlight = await followersInFlight(ctx);

    await ctx.redis.kill();
    await sleep(2_000);
    await ctx.redis.start();

    // What followers were sent is what is stored: a run whose job Redis forgot goes on (the lost-reply sweep
    // leaves a reply with a live run alone), and one that stopped as its lock lapsed (shorter than the outage)
    // is failed by the sweep, whose end starts its followers over with the content it stored.
    await inFlight.expectEndedAsStored({ deltasMatchStored: true });

    // The conversation takes new turns. (Right after the restart a new turn's job is now and then lost
    // before it starts and its reply failed `reply_lost`: the worker side, not the followers; so it may take two.)
    upstream.setBehaviour({ kind: "ok" });
    await eventually(async () => {
      const res = await ctx.api.post(`/conversations/${inFlight.streamedConv}/messages`, { content: "again?" });
      return res.status === 201 && res.body.reply.status === "completed" ? res : null;
    }, { what: "a new turn completes", timeoutMs: 30_000 });
  }, 90_000);
});

describe("followers while Redis stays away", () => {
  const ctx = useServiceOnOwnRedis();

  it("end from the stored row without Redis", async () => {
    upstream.setBehaviour({ kind: "ok", replyTokens: 400, tokenDelayMs: 50 }); // about 20 s of tokens
    const inFlight = await followersInFlight(ctx);
    await ctx.redis.kill();
    // Stored as a worker stores a reply that it cannot announce: the end never reaches Redis.
    const full = Array.from({ length: 400 }, (_, i) => ` w${i}`).join("");
    await ctx.service.sql`
      update messages set status = 'completed', content = ${full}, finish_reason = 'stop', completed_at = now()
      where role = 'assistant' and status in ('queued', 'in_progress')`;
    await inFlight.expectEndedAsStored({ deltasMatchStored: true });
  }, 90_000);
});
