import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { numberedTokens, startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, followedContent, readEvents } from "../support/http.ts";
import { startOwnRedis, type OwnRedis } from "../support/redis-server.ts";
import { startTestService, startTestServiceBehindPgProxy, type TestServiceBehindPgProxy, type TestService } from "../support/service.ts";
import type { TcpProxy } from "../support/tcp-proxy.ts";
import { eventually, sleep } from "../support/waiting.ts";

/**
 * In-flight replies ride out a short outage of Redis (their events are held
 * and retried) or Postgres (their final write is retried), and what is stored
 * is exactly what followers were sent.
 */

/** Streamed turns on `count` new conversations; resolves once every turn is stored, with each one's events to come. */
async function startStreamedTurns(url: string, count: number) {
  const api = apiClient(`${url}/v1`);
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const { body: conv } = await api.post("/conversations", { model: "fake-model" });
      const res = await authedFetch(`${url}/v1/conversations/${conv.id}/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ content: `turn ${i}`, stream: true }),
      });
      expect(res.status).toBe(200);
      return { conversationId: conv.id as string, events: readEvents(res).then((r) => r.events) };
    }),
  );
}

const REPLY = numberedTokens(60).join("");

let upstream: FakeUpstream;
beforeAll(async () => {
  upstream = await startFakeUpstream();
  // 60 tokens, 60 ms apart: each reply streams for about 3.6 s.
  upstream.setBehaviour({ kind: "ok", tokenDelayMs: 60, replyTokens: 60 });
});
afterAll(() => upstream?.close());

describe("Redis restarted (empty) while replies stream", () => {
  let redis: OwnRedis;
  let service: TestService;
  beforeAll(async () => {
    redis = await startOwnRedis();
    service = await startTestService({
      REDIS_URL: redis.url,
      UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
      REPLY_EVENTS_OUTAGE_MS: 6_000,
    });
  });
  afterAll(async () => {
    await service?.stop();
    await redis?.kill();
  });

  it("completes every in-flight reply across a 2 s restart, stored exactly as followers received it", async () => {
    const turns = await startStreamedTurns(service.url, 8);
    await sleep(700);
    await redis.kill();
    await sleep(2_000);
    await redis.start();

    for (const { conversationId, events } of turns) {
      const seen = await events;
      const [row] = await service.sql`select status, content, error from messages where conversation_id = ${conversationId} and role = 'assistant'`;
      expect(row, conversationId).toMatchObject({ status: "completed", content: REPLY });
      expect(followedContent(seen)).toBe(row?.content);
      expect(seen.at(-1)?.event).toBe("done");
    }
  }, 90_000);

  it("fails replies with events_unavailable when Redis stays away past the bound, keeping what followers got", async () => {
    const turns = await startStreamedTurns(service.url, 4);
    await sleep(700);
    await redis.kill();
    await sleep(8_000); // past REPLY_EVENTS_OUTAGE_MS (6 s)
    await redis.start();

    for (const { conversationId, events } of turns) {
      const row = await eventually(async () => {
        const [r] = await service.sql`select status, content, error from messages where conversation_id = ${conversationId} and role = 'assistant'`;
        return r && !["queued", "in_progress"].includes(r.status) ? r : null;
      }, { what: "reply ends", timeoutMs: 30_000 });
      expect(row.status).toBe("failed");
      expect(row.error).toMatchObject({ code: "events_unavailable", type: "server_error" });
      expect(row.content.length).toBeGreaterThan(0);
      expect(REPLY.startsWith(row.content)).toBe(true);
      const seen = await events;
      expect(followedContent(seen)).toBe(row.content);
    }
  }, 90_000);
});

describe("Postgres cut while replies stream", () => {
  let service: TestServiceBehindPgProxy;
  let proxy: TcpProxy;
  beforeAll(async () => {
    service = await startTestServiceBehindPgProxy({
      UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
      // The sweep runs often: a reply whose final write failed would be failed as lost within a second.
      LOST_REPLY_SWEEP_MS: 500,
      LOST_REPLY_GRACE_MS: 1_000,
    });
    proxy = service.pgProxy;
  });
  afterAll(() => service?.stop());

  it("stores every fully generated reply once Postgres is back: completed, with its whole content", async () => {
    const turns = await startStreamedTurns(service.url, 8);
    await sleep(500);
    await proxy.cut();
    // The replies finish streaming while Postgres is away; their final writes wait for it.
    await sleep(4_000);
    await proxy.restore();

    for (const { conversationId, events } of turns) {
      const row = await eventually(async () => {
        const [r] = await service.sql`select status, content, error from messages where conversation_id = ${conversationId} and role = 'assistant'`;
        return r && !["queued", "in_progress"].includes(r.status) ? r : null;
      }, { what: "reply ends", timeoutMs: 60_000 });
      expect(row).toMatchObject({ status: "completed", content: REPLY, error: null });
      expect(followedContent(await events)).toBe(REPLY);
    }
  }, 90_000);
});
