import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Config } from "../../src/config.ts";
import { createLogger } from "../../src/logger.ts";
import { COMPLETIONS_QUEUE } from "../../src/queue/completions.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { parseEntry, ReplyEventLog, type ReplyEvent } from "../../src/streams/reply-events.ts";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, readEvents } from "../support/http.ts";
import { seedTestApiKey } from "../support/keys.ts";
import { createTestDatabase, startTestService, testConfig, type TestDatabase, type TestService } from "../support/service.ts";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.ts";
import { eventually, sleep } from "../support/waiting.ts";

/**
 * A reply's run is an attempt: writes from a run that no longer owns the reply
 * (its job lock lost, or its reply ended by a cancel) are refused, and a
 * reply's stream ends once, with nothing after its end.
 */

let upstream: FakeUpstream;
let service: TestService;
/** A second API instance, with connections of its own: a cancel reaches Redis apart from the worker's writes. */
let otherApi: RunningService;
let redis: Redis;
let queue: Queue;
let replyEvents: ReplyEventLog;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  service = await startTestService({
    UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
    WORKER_LOCK_MS: 1000,
    WORKER_STALLED_CHECK_MS: 500,
  });
  otherApi = await startService({ ...service.config, ROLE: "api", PORT: 0 }, createLogger("silent"));
  redis = new Redis(service.config.REDIS_URL);
  queue = new Queue(COMPLETIONS_QUEUE, { connection: redis, prefix: service.config.REDIS_PREFIX });
  replyEvents = new ReplyEventLog({ redis, prefix: service.config.REDIS_PREFIX, ttlSeconds: 60 });
  api = apiClient(`${service.url}/v1`);
});
afterAll(async () => {
  await otherApi?.stop();
  await service?.stop();
  await queue?.close();
  redis?.disconnect();
  await upstream?.close();
});
beforeEach(() => upstream.reset());

async function startReply(content: string) {
  const { body: conv } = await api.post("/conversations", { model: "fake-model" });
  const { body } = await api.post(`/conversations/${conv.id}/messages`, { content, wait: false });
  return { conversationId: conv.id as string, replyId: body.reply.id as string };
}

const streamOf = async (replyId: string): Promise<ReplyEvent[]> =>
  ((await redis.xrange(replyEvents.key(replyId), "-", "+")) as [string, string[]][]).map(([id, fields]) => parseEntry(id, fields));

const deltaText = (events: { event?: string | undefined; data: string }[]) =>
  events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content as string).join("");

/** Once the job has left BullMQ's active list, its run has returned: whatever it was going to write is written. */
const jobSettled = (replyId: string) =>
  eventually(async () => ["completed", "failed"].includes(await queue.getJobState(replyId)), { what: `job ${replyId} settles`, timeoutMs: 30_000, everyMs: 25 });

describe("a cancel racing the end of a reply", () => {
  it("leaves nothing after the reply's end in 25 rounds, and a follower resuming at the end closes at once", async () => {
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 1, replyTokens: 60 });
    for (let round = 0; round < 25; round++) {
      const { conversationId, replyId } = await startReply(`round ${round}`);
      await eventually(async () => (await streamOf(replyId)).some((e) => e.event === "message.delta"), { what: "first delta", timeoutMs: 10_000, everyMs: 25 });
      // Spread the cancels over the reply: some land mid-stream, some as it finishes.
      await sleep(round % 5 === 0 ? 0 : (round * 7) % 60);
      const cancel = await authedFetch(`${otherApi.url}/v1/conversations/${conversationId}/messages/${replyId}/cancel`, { method: "POST" });
      expect(cancel.status).toBe(200);
      await jobSettled(replyId);

      const events = await streamOf(replyId);
      const names = events.map((e) => e.event);
      expect(names.filter((n) => n === "done"), `round ${round}: ${names.join(",")}`).toHaveLength(1);
      expect(names.at(-1), `round ${round}: ${names.join(",")}`).toBe("done");
      const ends = names.filter((n) => n === "message.cancelled" || n === "message.completed");
      expect(ends, `round ${round}`).toHaveLength(1);
      // The stored reply is what the stream carried.
      const [row] = await service.sql`select status, content from messages where id = ${replyId}`;
      expect(deltaText(events)).toBe(row?.content);
      expect(JSON.parse(events.at(-2)!.data)).toMatchObject({ status: row?.status, content: row?.content });

      const resumed = await authedFetch(`${service.url}/v1/conversations/${conversationId}/messages/${replyId}/events`, {
        headers: { "last-event-id": events.at(-1)!.id },
        signal: AbortSignal.timeout(10_000),
      });
      expect((await readEvents(resumed)).events).toEqual([]);
    }
  }, 180_000);
});

describe("a run whose job lock lapses while its event loop is starved", () => {
  it("stops and aborts its upstream call; the run that takes the job over writes the reply alone", async () => {
    // 30 tokens, 100 ms apart: the run is mid-stream when its process stops answering for 3.5 s (lock: 1 s).
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100, replyTokens: 30 });
    const { replyId } = await startReply("starve me");
    await eventually(async () => (await streamOf(replyId)).filter((e) => e.event === "message.delta").length >= 3, { what: "deltas", timeoutMs: 10_000, everyMs: 25 });
    const blockedUntil = Date.now() + 3_500;
    while (Date.now() < blockedUntil) {
      // Busy: no timer runs, no lock is renewed, as under heavy CPU load.
    }

    const row = await eventually(async () => {
      const [r] = await service.sql`select status, content, attempt from messages where id = ${replyId}`;
      return r && !["queued", "in_progress"].includes(r.status) ? r : null;
    }, { what: "reply ends", timeoutMs: 60_000, everyMs: 25 });
    await jobSettled(replyId);
    expect(row.status).toBe("completed");
    expect(row.content).toBe(Array.from({ length: 30 }, (_, i) => ` w${i}`).join(""));
    expect(row.attempt).toBeGreaterThan(1);

    const events = await streamOf(replyId);
    const names = events.map((e) => e.event);
    const lastReset = names.lastIndexOf("message.reset");
    expect(lastReset).toBeGreaterThan(0);
    // After the last start-over, the deltas are the reply, once: nothing from the run that lost the job.
    expect(deltaText(events.slice(lastReset + 1))).toBe(row.content);
    expect(names.filter((n) => n === "done")).toHaveLength(1);
    expect(names.at(-1)).toBe("done");

    // The lost run's upstream call was aborted rather than run (and billed) to its end.
    expect(upstream.requests.length).toBeGreaterThan(1);
    await eventually(async () => upstream.requests[0]?.closedEarly, { what: "first upstream call closes", timeoutMs: 10_000, everyMs: 25 });
    expect(upstream.requests[0]?.closedEarly).toBe(true);
  }, 90_000);
});

describe("a worker cut off from Redis while another worker can reach it", () => {
  let database: TestDatabase;
  let proxy: TcpProxy;
  /** API and worker, on Redis directly. */
  let reachable: RunningService;
  /** A worker whose Redis connections go through the proxy. */
  let cutOff: RunningService;
  let config: Config;
  beforeAll(async () => {
    database = await createTestDatabase();
    config = testConfig(database.url, {
      UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
      WORKER_LOCK_MS: 1500,
      WORKER_STALLED_CHECK_MS: 500,
    });
    const redisUrl = new URL(config.REDIS_URL);
    proxy = await startTcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
    cutOff = await startService({ ...config, ROLE: "worker", REDIS_URL: `redis://127.0.0.1:${proxy.port}` }, createLogger("silent"));
    await seedTestApiKey(database.sql);
    // Only the worker that will be cut off is there when the reply is queued: it takes the job.
    reachable = await startService({ ...config, ROLE: "api", PORT: 0 }, createLogger("silent"));
  });
  afterAll(async () => {
    proxy?.heal();
    await reachable?.stop();
    await cutOff?.stop(1_000);
    await proxy?.close();
    await database?.drop();
  });

  it("stops its run before its lock lapses, so the reply is never generated twice at once", async () => {
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100, replyTokens: 40 });
    const api2 = apiClient(`${reachable.url}/v1`);
    const { body: conv } = await api2.post("/conversations", { model: "fake-model" });
    const res = await authedFetch(`${reachable.url}/v1/conversations/${conv.id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: "partition me", stream: true }),
    });
    const following = readEvents(res);
    await eventually(async () => upstream.requests.length === 1, { what: "the cut-off worker calls the upstream", timeoutMs: 10_000, everyMs: 25 });
    await sleep(500);
    // A worker of the reachable kind joins, then the first one's Redis goes silent.
    const second = await startService({ ...config, ROLE: "worker" }, createLogger("silent"));
    try {
      proxy.blackhole();
      const { events } = await following;
      proxy.heal();
      const [row] = await database.sql`select status, content from messages where conversation_id = ${conv.id} and role = 'assistant'`;
      expect(row).toMatchObject({ status: "completed", content: Array.from({ length: 40 }, (_, i) => ` w${i}`).join("") });
      let content = "";
      for (const e of events) {
        if (e.event === "message.reset") content = "";
        if (e.event === "message.delta") content += JSON.parse(e.data).delta.content;
      }
      expect(content).toBe(row?.content);
      // The cut-off run's upstream call ended before the run that took the job over made its own.
      expect(upstream.requests.length).toBe(2);
      const [first, takeover] = upstream.requests;
      expect(first?.closedEarly).toBe(true);
      expect(first?.endedAt).toBeLessThanOrEqual(takeover!.startedAt);
    } finally {
      proxy.heal();
      await second.stop();
    }
  }, 90_000);
});
