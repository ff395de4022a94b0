import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seedApiKeyFor, seedTestApiKey } from "../support/keys.ts";
import { apiClient, authedFetch, followedContent, readEvents } from "../support/http.ts";
import { freePort, useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";
import { startOwnRedisCluster, type OwnRedisCluster } from "../support/redis-cluster.ts";
import type { TestDatabase } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/**
 * Parley against a real 3-master Redis Cluster of the test's own: two APIs and a worker, all on the cluster.
 * Before REDIS_CLUSTER_NODES, the worker looped on CROSSSLOT, turns answered 500 (MOVED), the rate limiter
 * counted per process without a word and /readyz said ready.
 */
const processes = useParleyProcesses();
let cluster: OwnRedisCluster;
let database: TestDatabase;
let env: Record<string, string>;
let apis: [ParleyProcess, ParleyProcess];
let worker: ParleyProcess;
let urls: [string, string];

const startApi = async (port: string) => {
  const p = processes.start({ ...env, ROLE: "api", PORT: port });
  await waitForOutput(p, "api listening");
  return p;
};
const startWorker = async () => {
  const p = processes.start({ ...env, ROLE: "worker" });
  await waitForOutput(p, "worker started");
  return p;
};

beforeAll(async () => {
  cluster = await startOwnRedisCluster(3);
  const made = await processes.environment({
    REDIS_URL: `redis://127.0.0.1:${cluster.ports[0]}`,
    REDIS_CLUSTER_NODES: cluster.nodes,
    SIMULATOR_TTFT_MS: "0",
    SIMULATOR_TOKENS_PER_SECOND: "200",
    RATE_LIMIT_REQUESTS: "40",
    RATE_LIMIT_WINDOW_SECONDS: "60",
    MAX_CONCURRENT_REPLIES: "4",
    // A killed worker's job is taken again within lock + stalled check.
    WORKER_LOCK_MS: "2000",
    WORKER_STALLED_CHECK_MS: "1000",
  });
  database = made.database;
  env = made.env;
  const ports = [env.PORT!, String(await freePort())] as const;
  apis = [await startApi(ports[0]), await startApi(ports[1])];
  urls = [`http://127.0.0.1:${ports[0]}`, `http://127.0.0.1:${ports[1]}`];
  worker = await startWorker();
  await seedTestApiKey(database.sql);
}, 120_000);
afterAll(async () => {
  await cluster?.stop();
});

const clientOf = (i: 0 | 1, key?: string) => apiClient(`${urls[i]}/v1`, key);
const keysOn = async (port: number, pattern: string) =>
  (await cluster.cli(port, "--scan", "--pattern", pattern)).split("\n").filter(Boolean);

describe("Parley on a Redis Cluster", () => {
  it("is ready, and runs a turn end to end", async () => {
    for (const url of urls) expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const api = clientOf(0);
    const { body: conv } = await api.post("/conversations", {});
    const turn = await api.post(`/conversations/${conv.id}/messages`, { content: "hello, cluster" });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
    expect(turn.body.reply.content.length).toBeGreaterThan(0);
    // The queue's counts come from the cluster (BullMQ under the hash-tagged prefix) at scrape time.
    const exposition = await (await fetch(`${urls[0]}/metrics`)).text();
    expect(exposition).toMatch(/^parley_queue_jobs\{state="waiting"\} \d+$/m);
    expect(exposition).not.toMatch(/^parley_metrics_scrape_failures_total\{source="queue"\} [1-9]/m);
  });

  it("relays a reply started on one API to a follower on the other, and cancels it from there", async () => {
    const one = clientOf(0);
    const { body: conv } = await one.post("/conversations", {});
    // 200 tokens at 20/s: in flight for ten seconds.
    const { body: started } = await one.post(`/conversations/${conv.id}/messages`, {
      content: "a long one",
      wait: false,
      params: { simulate: { reply_tokens: 200, tokens_per_second: 20 } },
    });
    const replyId = started.reply.id as string;
    const res = await authedFetch(`${urls[1]}/v1/conversations/${conv.id}/messages/${replyId}/events`);
    expect(res.status).toBe(200);
    const following = readEvents(res);
    await eventually(async () => (await clientOf(1).get(`/conversations/${conv.id}/messages/${replyId}`)).body.content.length > 0, {
      what: "the reply has content",
      timeoutMs: 30_000,
    });
    // The follower listens on the stream's own shard (SSUBSCRIBE), not on a channel broadcast to every node.
    const channel = `${env.REDIS_PREFIX}:reply-events:{${replyId}}`;
    const subscribers = async (command: "SHARDNUMSUB" | "NUMSUB") =>
      (await Promise.all(cluster.ports.map((p) => cluster.cli(p, "PUBSUB", command, channel))))
        .map((out) => Number(out.trim().split("\n")[1] ?? 0))
        .reduce((a, b) => a + b, 0);
    expect(await subscribers("SHARDNUMSUB")).toBe(1);
    expect(await subscribers("NUMSUB")).toBe(0);
    const cancelled = await clientOf(1).post(`/conversations/${conv.id}/messages/${replyId}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe("cancelled");
    const { events } = await following;
    expect(events.at(-2)?.event).toBe("message.cancelled");
    expect(followedContent(events)).toBe(cancelled.body.content);
  });

  it("shares the concurrent-reply limit between the two APIs", async () => {
    const key = await seedApiKeyFor(database.sql, "busy");
    const held = { simulate: { ttft_ms: 60_000 } };
    const conversations: string[] = [];
    for (let i = 0; i < 5; i++) conversations.push((await clientOf(0, key).post("/conversations", { params: held })).body.id);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await clientOf((i % 2) as 0 | 1, key).post(`/conversations/${conversations[i]}/messages`, { content: "hold", wait: false })).status);
    }
    expect(statuses).toEqual([202, 202, 202, 202]);
    for (const i of [0, 1] as const) {
      const refused = await clientOf(i, key).post(`/conversations/${conversations[4]}/messages`, { content: "fifth", wait: false });
      expect(refused.status).toBe(429);
      expect(refused.body.error.code).toBe("concurrency_limit_exceeded");
    }
    // Give the slots back for the tests after this one.
    for (let i = 0; i < 4; i++) {
      const { body } = await clientOf(0, key).get(`/conversations/${conversations[i]}/messages?limit=10`);
      const reply = (body.data as { id: string; role: string }[]).find((m) => m.role === "assistant");
      await clientOf(0, key).post(`/conversations/${conversations[i]}/messages/${reply!.id}/cancel`);
    }
  });

  it("counts one request rate per key across both APIs, in the cluster", async () => {
    const key = await seedApiKeyFor(database.sql, "counted");
    const statuses: number[] = [];
    for (let i = 0; i < 44; i++) statuses.push((await clientOf((i % 2) as 0 | 1, key).get("/models")).status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(40);
    expect(statuses.slice(40)).toEqual([429, 429, 429, 429]);
    for (const api of apis) expect(api.output()).not.toContain("counts alone");
  });

  it("finishes a reply whose worker was killed (SIGKILL) on another worker", { timeout: 120_000 }, async () => {
    // Each test from here on has a key of its own: the default one's 40 requests a minute are spent.
    const api = clientOf(0, await seedApiKeyFor(database.sql, "survivor"));
    const { body: conv } = await api.post("/conversations", {});
    const { body: started } = await api.post(`/conversations/${conv.id}/messages`, {
      content: "survive this",
      wait: false,
      params: { simulate: { reply_tokens: 60, tokens_per_second: 20 } },
    });
    const replyId = started.reply.id as string;
    // Watched in Postgres: polling the API would spend the key's request rate.
    const status = async () => (await database.sql`select status from messages where id = ${replyId}`)[0]?.status as string | undefined;
    await eventually(async () => (await status()) === "in_progress", { what: "the reply is generating", timeoutMs: 30_000 });
    worker.child.kill("SIGKILL");
    await worker.exited;
    worker = await startWorker();
    await eventually(async () => (await status()) === "completed", { what: "the reply completed on the new worker", timeoutMs: 60_000 });
    const { body: reply } = await api.get(`/conversations/${conv.id}/messages/${replyId}`);
    expect(reply.status).toBe("completed");
    expect(reply.content.length).toBeGreaterThan(0);
    expect(worker.output()).toContain("reply restarts: the run that was generating it was lost");
  });

  it("spreads reply streams over the masters and keeps each BullMQ queue in one slot", { timeout: 60_000 }, async () => {
    const api = clientOf(1, await seedApiKeyFor(database.sql, "spread"));
    for (let i = 0; i < 9; i++) {
      const { body: conv } = await api.post("/conversations", {});
      expect((await api.post(`/conversations/${conv.id}/messages`, { content: `turn ${i}` })).status).toBe(201);
    }
    const streamsPerMaster = await Promise.all(cluster.ports.map((p) => keysOn(p, `${env.REDIS_PREFIX}:reply-events:*`)));
    expect(streamsPerMaster.filter((keys) => keys.length > 0).length).toBeGreaterThan(1);
    const queuePerMaster = await Promise.all(cluster.ports.map((p) => keysOn(p, `{${env.REDIS_PREFIX}}:*`)));
    expect(queuePerMaster.filter((keys) => keys.length > 0)).toHaveLength(1);
    for (const p of [...apis, worker]) expect(p.output()).not.toMatch(/CROSSSLOT|MOVED/);
  });

  it("says not ready when a master is gone", async () => {
    // The last test: the cluster loses a third of its slots.
    await cluster.cli(cluster.ports[2]!, "SHUTDOWN", "NOSAVE").catch(() => {});
    await eventually(async () => (await fetch(`${urls[0]}/readyz`)).status === 503, { what: "/readyz answers 503", timeoutMs: 30_000 });
  });
});
