import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeUpstream, upstreamError, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, readEvents } from "../support/http.ts";
import { seedTestApiKey } from "../support/keys.ts";
import { freePort, useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";
import { startOwnRedis, type OwnRedis } from "../support/redis-server.ts";
import type { TestDatabase } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/** One sample of the text exposition: `name{label="value",…} number`. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[k!] = v!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The sum of the samples named `name` whose labels include `labels` (0 when none). */
const valueOf = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples
    .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
const has = (samples: Sample[], name: string) => samples.some((s) => s.name === name);

async function scrape(url: string, timeoutMs = 30_000): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(timeoutMs) });
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

const processes = useParleyProcesses();

describe("GET /metrics on the API and the worker", () => {
  let redis: OwnRedis;
  let upstream: FakeUpstream;
  let database: TestDatabase;
  let apiUrl: string;
  let workerUrl: string;
  let api: ReturnType<typeof apiClient>;
  let apiProcess: ParleyProcess;
  let workerProcess: ParleyProcess;

  beforeAll(async () => {
    // A Redis of the test's own: the last test takes it away.
    redis = await startOwnRedis();
    upstream = await startFakeUpstream();
    const healthPort = await freePort();
    const { database: db, env } = await processes.environment({
      REDIS_URL: redis.url,
      SIMULATOR_TTFT_MS: "0",
      SIMULATOR_TOKENS_PER_SECOND: "200",
      UPSTREAMS: JSON.stringify([{ name: "fake", base_url: upstream.baseURL, api_key: "sk-test", models: ["fake-model"] }]),
      DEFAULT_MODEL: "parley-sim-1",
      UPSTREAM_MAX_RETRIES: "2",
      UPSTREAM_RETRY_BASE_MS: "10",
      LOG_LEVEL: "warn",
      DATABASE_POOL_MAX: "7",
    });
    database = db;
    apiProcess = processes.start({ ...env, ROLE: "api", LOG_LEVEL: "info" });
    workerProcess = processes.start({ ...env, ROLE: "worker", WORKER_HEALTH_PORT: String(healthPort), LOG_LEVEL: "info" });
    await Promise.all([waitForOutput(apiProcess, "api listening"), waitForOutput(workerProcess, "worker started")]);
    await seedTestApiKey(database.sql);
    apiUrl = `http://127.0.0.1:${env.PORT}`;
    workerUrl = `http://127.0.0.1:${healthPort}`;
    api = apiClient(`${apiUrl}/v1`);
  }, 120_000);

  afterAll(async () => {
    await upstream?.close();
    await redis?.kill();
  });

  it("counts requests by route pattern, model calls, tokens equal to the stored usage, upstream errors and retries", async () => {
    const [apiBefore, workerBefore] = await Promise.all([scrape(apiUrl), scrape(workerUrl)]);

    // Two simulator turns, on one conversation.
    const { status: created, body: conv } = await api.post("/conversations", {});
    expect(created).toBe(201);
    for (const content of ["hello", "and again"]) {
      const turn = await api.post(`/conversations/${conv.id}/messages`, { content });
      expect(turn.status).toBe(201);
      expect(turn.body.reply.status).toBe("completed");
    }
    // The fake upstream: a 503 then an answer (one retry), then a 400 (refused: no retry).
    const { body: fakeConv } = await api.post("/conversations", { model: "fake-model" });
    upstream.queueBehaviour(upstreamError(503, { message: "overloaded", type: "server_error" }));
    const retried = await api.post(`/conversations/${fakeConv.id}/messages`, { content: "hi there" });
    expect(retried.body.reply.status).toBe("completed");
    upstream.queueBehaviour(upstreamError(400, { message: "bad field", type: "invalid_request_error" }));
    const refused = await api.post(`/conversations/${fakeConv.id}/messages`, { content: "once more" });
    expect(refused.status).toBe(201);
    expect(refused.body.reply.status).toBe("failed");
    const unknown = await api.get("/no-such-route/123");
    expect(unknown.status).toBe(404);

    const [apiAfter, workerAfter] = await Promise.all([scrape(apiUrl), scrape(workerUrl)]);
    const moved = (before: Sample[], after: Sample[], name: string, labels: Record<string, string> = {}) =>
      valueOf(after, name, labels) - valueOf(before, name, labels);

    // Requests, by route pattern (never the path with its ids) and status.
    const apiMoved = (name: string, labels: Record<string, string>) => moved(apiBefore, apiAfter, name, labels);
    expect(apiMoved("parley_http_requests_total", { method: "POST", route: "/v1/conversations", status: "201" })).toBe(2);
    const messages = "/v1/conversations/:conversation_id/messages";
    expect(apiMoved("parley_http_requests_total", { method: "POST", route: messages, status: "201" })).toBe(4);
    expect(apiMoved("parley_http_requests_total", { method: "GET", route: "unmatched", status: "404" })).toBe(1);
    expect(apiAfter.some((s) => s.labels.route?.includes(conv.id))).toBe(false);
    expect(apiMoved("parley_http_request_duration_seconds_count", { method: "POST", route: messages })).toBe(4);

    // Model calls, on the worker: a TTFT per call that had a first token, a duration per call.
    const workerMoved = (name: string, labels: Record<string, string>) => moved(workerBefore, workerAfter, name, labels);
    expect(workerMoved("parley_model_ttft_seconds_count", { model: "parley-sim-1" })).toBe(2);
    expect(workerMoved("parley_model_ttft_seconds_count", { model: "fake-model" })).toBe(1);
    expect(workerMoved("parley_model_call_duration_seconds_count", { model: "parley-sim-1", outcome: "completed" })).toBe(2);
    expect(workerMoved("parley_model_call_duration_seconds_count", { model: "fake-model", outcome: "completed" })).toBe(1);
    expect(workerMoved("parley_model_call_duration_seconds_count", { model: "fake-model", outcome: "failed" })).toBe(1);

    // Tokens: exactly the usage stored on the replies.
    const stored = await database.sql<{ model: string; prompt: number; completion: number }[]>`
      select coalesce(m.model, c.model) as model,
             sum((m.usage->>'prompt_tokens')::int)::int as prompt,
             sum((m.usage->>'completion_tokens')::int)::int as completion
      from messages m join conversations c on c.id = m.conversation_id
      where m.role = 'assistant' and m.usage is not null group by 1`;
    expect(stored.map((r) => r.model).sort()).toEqual(["fake-model", "parley-sim-1"]);
    for (const row of stored) {
      expect(row.completion).toBeGreaterThan(0);
      expect(workerMoved("parley_model_tokens_total", { model: row.model, kind: "prompt" })).toBe(row.prompt);
      expect(workerMoved("parley_model_tokens_total", { model: row.model, kind: "completion" })).toBe(row.completion);
    }

    // Upstream errors by code and status, and the one retry.
    expect(workerMoved("parley_upstream_errors_total", { provider: "fake", code: "upstream_error", status: "503" })).toBe(1);
    expect(workerMoved("parley_upstream_errors_total", { provider: "fake", code: "upstream_error", status: "400" })).toBe(1);
    expect(workerMoved("parley_upstream_errors_total", { provider: "simulator" })).toBe(0);
    expect(workerMoved("parley_upstream_retries_total", { provider: "fake" })).toBe(1);
    expect(upstream.requests).toHaveLength(3);

    // Nothing is running now; the queue's counts are read from Redis; the pool is DATABASE_POOL_MAX.
    expect(valueOf(workerAfter, "parley_jobs_in_flight")).toBe(0);
    for (const state of ["waiting", "active", "delayed"]) {
      expect(apiAfter.some((s) => s.name === "parley_queue_jobs" && s.labels.state === state)).toBe(true);
    }
    expect(valueOf(apiAfter, "parley_db_pool_max")).toBe(7);
    // Statements in flight: none once the API is idle (its turns have ended).
    await eventually(async () => valueOf(await scrape(apiUrl), "parley_db_queries_in_flight") === 0, {
      what: "the API's statements in flight back to 0",
      timeoutMs: 30_000,
    });
    // The default process metrics, prefixed.
    expect(has(apiAfter, "parley_process_cpu_seconds_total")).toBe(true);
    expect(has(workerAfter, "parley_nodejs_eventloop_lag_seconds")).toBe(true);
  }, 120_000);

  it("shows followers and a running job during a streamed reply, and the relay lag of its events", async () => {
    const before = await scrape(apiUrl);
    const { body: conv } = await api.post("/conversations", {});
    // 60 tokens at 20 a second: three seconds of streaming to look at.
    const res = await authedFetch(`${apiUrl}/v1/conversations/${conv.id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: "a slow one", stream: true, params: { simulate: { reply_tokens: 60, tokens_per_second: 20 } } }),
    });
    expect(res.status).toBe(200);
    const reading = readEvents(res);
    await eventually(async () => valueOf(await scrape(apiUrl), "parley_reply_followers") >= 1, {
      what: "the API to count the follower",
      timeoutMs: 30_000,
    });
    await eventually(async () => valueOf(await scrape(workerUrl), "parley_jobs_in_flight", { kind: "reply" }) === 1, {
      what: "the worker to count the running reply",
      timeoutMs: 30_000,
    });
    const { events } = await reading;
    expect(events.at(-2)?.event).toBe("message.completed");
    const deltas = events.filter((e) => e.event === "message.delta").length;
    expect(deltas).toBeGreaterThan(0);

    const after = await scrape(apiUrl);
    expect(valueOf(after, "parley_reply_followers")).toBe(0);
    // Every event written after the response opened: the deltas at least (the end and `done` too).
    const lagged = valueOf(after, "parley_relay_lag_seconds_count") - valueOf(before, "parley_relay_lag_seconds_count");
    expect(lagged).toBeGreaterThanOrEqual(deltas);
    expect(lagged).toBeLessThanOrEqual(events.length);
    const lagSum = valueOf(after, "parley_relay_lag_seconds_sum") - valueOf(before, "parley_relay_lag_seconds_sum");
    expect(lagSum).toBeGreaterThanOrEqual(0);
    expect(valueOf(after, "parley_relay_lag_seconds_bucket", { le: "+Inf" })).toBe(valueOf(after, "parley_relay_lag_seconds_count"));
    await eventually(async () => valueOf(await scrape(workerUrl), "parley_jobs_in_flight", { kind: "reply" }) === 0, {
      what: "the worker to count the reply ended",
      timeoutMs: 30_000,
    });
  }, 120_000);

  it("asks for METRICS_TOKEN on the API when one is set", async () => {
    const port = await freePort();
    const { env } = await processes.environment({ REDIS_URL: redis.url, METRICS_TOKEN: "m".repeat(24), ROLE: "api", PORT: String(port) });
    const p = processes.start(env);
    await waitForOutput(p, "api listening");
    const url = `http://127.0.0.1:${port}/metrics`;
    expect((await fetch(url)).status).toBe(401);
    expect((await fetch(url, { headers: { authorization: `Bearer ${"x".repeat(24)}` } })).status).toBe(401);
    const ok = await fetch(url, { headers: { authorization: `Bearer ${"m".repeat(24)}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain("parley_http_requests_total");
    p.child.kill("SIGTERM");
    expect(await p.exited).toBe(0);
  }, 120_000);

  it("answers within its bound while Redis is away, without the queue's counts, and counts the failure and the Redis errors", async () => {
    await redis.kill();
    // The connections notice (and count their errors) as they try again.
    await eventually(async () => valueOf(await scrape(apiUrl), "parley_redis_errors_total") > 0, {
      what: "the API to count Redis errors",
      timeoutMs: 30_000,
    });
    for (const url of [apiUrl, workerUrl]) {
      const started = Date.now();
      // The scrape waits 1 s for the queue's counts; 15 s is far beyond that on a loaded machine, far short of a hang.
      const first = await scrape(url, 15_000);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(first.some((s) => s.name === "parley_queue_jobs")).toBe(false);
      expect(has(first, "parley_http_requests_total") || has(first, "parley_model_ttft_seconds_count")).toBe(true);
      expect(valueOf(first, "parley_metrics_scrape_failures_total", { source: "queue" })).toBeGreaterThanOrEqual(1);
    }
    const worker = await scrape(workerUrl, 15_000);
    expect(valueOf(worker, "parley_redis_errors_total", { connection: "worker" })).toBeGreaterThan(0);
  }, 120_000);
});
