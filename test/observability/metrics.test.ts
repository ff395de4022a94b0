import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { relayLagMeter, relayLagSeconds, routeLabel, UNMATCHED_ROUTE } from "../../src/observability/http.ts";
import { streamIdMs } from "../../src/streams/reply-events.ts";
import { Metrics } from "../../src/observability/metrics.ts";
import { instrumentProvider } from "../../src/observability/model-calls.ts";
import { withResilience } from "../../src/providers/resilient.ts";
import { ProviderError, type ChatChunk, type ChatProvider } from "../../src/providers/types.ts";

/** The value of one series in the exposition (null when absent). */
async function sample(metrics: Metrics, series: string): Promise<number | null> {
  const { body } = await metrics.expose();
  const line = body.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

describe("route labels", () => {
  const labelled: string[] = [];
  const app = new Hono();
  app.use(async (c, next) => {
    await next();
    labelled.push(routeLabel(c));
  });
  const v1 = new Hono();
  v1.use(async (_c, next) => next());
  v1.get("/conversations/:id/messages", (c) => c.text("ok"));
  app.route("/v1", v1);

  it("is the matched pattern, never the path, and one fixed value for no route", async () => {
    labelled.length = 0;
    await app.request("/v1/conversations/conv_123/messages");
    await app.request("/v1/conversations/conv_456/messages");
    await app.request("/v1/nothing/here");
    await app.request("/else", { method: "POST" });
    expect(labelled).toEqual(["/v1/conversations/:id/messages", "/v1/conversations/:id/messages", UNMATCHED_ROUTE, UNMATCHED_ROUTE]);
  });
});

describe("relay lag", () => {
  it("reads the time a stream id carries", () => {
    expect(streamIdMs("1796179094287-1")).toBe(1796179094287);
    expect(Number.isNaN(streamIdMs("nonsense"))).toBe(true);
  });

  it("measures events written after the response opened, and leaves out the backlog and ids without a time", () => {
    expect(relayLagSeconds("1000-0", 900, 1250)).toBe(0.25);
    expect(relayLagSeconds("899-3", 900, 1250)).toBeNull();
    expect(relayLagSeconds("0-1", 900, 1250)).toBeNull();
    expect(relayLagSeconds("x", 900, 1250)).toBeNull();
    // A Redis clock a little ahead of this one: no negative lag.
    expect(relayLagSeconds("1300-0", 900, 1250)).toBe(0);
  });

  it("observes each relayed event once, and nothing without an observer", () => {
    const seen: number[] = [];
    const relayed = relayLagMeter((s) => seen.push(s));
    const future = Date.now() + 60_000;
    relayed([{ id: `${future}-0` }, { id: "0-1" }, { id: "1-0" }]);
    expect(seen).toEqual([0]);
    expect(() => relayLagMeter(undefined)([{ id: `${future}-0` }])).not.toThrow();
  });
});

const chunks = (texts: string[], usage = { prompt_tokens: 7, completion_tokens: texts.length, total_tokens: 7 + texts.length }): ChatChunk[] => [
  { type: "delta", role: "assistant" },
  ...texts.map((content) => ({ type: "delta" as const, content })),
  { type: "finish", finishReason: "stop", usage },
];

function scripted(script: () => AsyncIterable<ChatChunk>): ChatProvider {
  return {
    name: "scripted",
    streamChat: () => script(),
    completeChat: async () => ({ choices: [{ content: "whole", finishReason: "stop" }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }),
  };
}

describe("model-call metrics", () => {
  const request = { model: "m-1", messages: [], params: {} };

  it("observes TTFT once, the duration by outcome and the usage's tokens", async () => {
    const metrics = new Metrics();
    const provider = instrumentProvider(scripted(async function* () { yield* chunks(["a", "b", "c"]); }), metrics);
    for (let i = 0; i < 2; i++) for await (const _ of provider.streamChat(request, new AbortController().signal)) void _;
    await provider.completeChat(request, AbortSignal.abort());
    expect(await sample(metrics, 'parley_model_ttft_seconds_count{model="m-1"}')).toBe(3);
    expect(await sample(metrics, 'parley_model_call_duration_seconds_count{model="m-1",outcome="completed"}')).toBe(3);
    expect(await sample(metrics, 'parley_model_tokens_total{model="m-1",kind="prompt"}')).toBe(7 + 7 + 3);
    expect(await sample(metrics, 'parley_model_tokens_total{model="m-1",kind="completion"}')).toBe(3 + 3 + 1);
  });

  it("counts a call that fails before its first token as failed, with no TTFT", async () => {
    const metrics = new Metrics();
    const provider = instrumentProvider(
      scripted(async function* () {
        yield { type: "delta", role: "assistant" };
        throw new ProviderError("no", { code: "upstream_error" });
      }),
      metrics,
    );
    await expect(async () => {
      for await (const _ of provider.streamChat(request, new AbortController().signal)) void _;
    }).rejects.toThrow("no");
    expect(await sample(metrics, 'parley_model_ttft_seconds_count{model="m-1"}')).toBeNull();
    expect(await sample(metrics, 'parley_model_call_duration_seconds_count{model="m-1",outcome="failed"}')).toBe(1);
  });

  it("labels at most 100 models; the rest share `other`", async () => {
    const metrics = new Metrics();
    for (let i = 0; i < 120; i++) metrics.forModel(`model-${i}`).tokens(1, 1);
    expect(await sample(metrics, 'parley_model_tokens_total{model="model-99",kind="prompt"}')).toBe(1);
    expect(await sample(metrics, 'parley_model_tokens_total{model="model-100",kind="prompt"}')).toBeNull();
    expect(await sample(metrics, 'parley_model_tokens_total{model="other",kind="prompt"}')).toBe(20);
  });
});

describe("upstream errors and retries", () => {
  it("counts every failed attempt by code and status, and each retry", async () => {
    const metrics = new Metrics();
    let calls = 0;
    const failing = scripted(async function* () {
      calls++;
      if (calls === 1) throw new ProviderError("busy", { code: "upstream_error", upstreamStatus: 503 });
      if (calls === 2) throw new ProviderError("gone", { code: "upstream_unreachable" });
      yield* chunks(["ok"]);
    });
    const provider = withResilience(failing, {
      maxRetries: 3,
      baseDelayMs: 1,
      maxDelayMs: 10,
      firstTokenTimeoutMs: 5_000,
      idleTimeoutMs: 5_000,
      sleep: async () => {},
      observer: metrics.upstream("fake"),
    });
    for await (const _ of provider.streamChat({ model: "m", messages: [], params: {} }, new AbortController().signal)) void _;
    expect(await sample(metrics, 'parley_upstream_errors_total{provider="fake",code="upstream_error",status="503"}')).toBe(1);
    expect(await sample(metrics, 'parley_upstream_errors_total{provider="fake",code="upstream_unreachable",status="none"}')).toBe(1);
    expect(await sample(metrics, 'parley_upstream_retries_total{provider="fake"}')).toBe(2);
  });
});

describe("the queue's counts at scrape time", () => {
  it("are read from the reader", async () => {
    const metrics = new Metrics();
    metrics.watchQueue(async () => ({ waiting: 4, active: 2, delayed: 0 }));
    expect(await sample(metrics, 'parley_queue_jobs{state="waiting"}')).toBe(4);
    expect(await sample(metrics, 'parley_queue_jobs{state="active"}')).toBe(2);
  });

  it("are left out, and the failure counted, when the reader does not answer within the bound", async () => {
    const metrics = new Metrics({ scrapeBoundMs: 50 });
    let answer = true;
    metrics.watchQueue(() => (answer ? Promise.resolve({ waiting: 1, active: 0, delayed: 0 }) : new Promise(() => {})));
    expect(await sample(metrics, 'parley_queue_jobs{state="waiting"}')).toBe(1);
    answer = false;
    // Bounded: a reader that never answers does not hold the scrape (vitest's own timeout would fail this).
    // The scrape that left them out says so itself.
    const { body } = await metrics.expose();
    expect(body).not.toMatch(/^parley_queue_jobs\{/m);
    expect(body).toMatch(/^parley_metrics_scrape_failures_total\{source="queue"\} 1$/m);
  });

  it("are left out when the reader fails", async () => {
    const metrics = new Metrics();
    metrics.watchQueue(() => Promise.reject(new Error("redis away")));
    expect(await sample(metrics, 'parley_queue_jobs{state="waiting"}')).toBeNull();
  });
});

describe("gauges", () => {
  it("count jobs while they run, and followers as the follower says", async () => {
    const metrics = new Metrics();
    const ended = metrics.jobStarted("reply");
    metrics.jobStarted("summary");
    let followers = 3;
    metrics.watchFollowers(() => followers);
    expect(await sample(metrics, 'parley_jobs_in_flight{kind="reply"}')).toBe(1);
    expect(await sample(metrics, "parley_reply_followers")).toBe(3);
    ended();
    followers = 0;
    expect(await sample(metrics, 'parley_jobs_in_flight{kind="reply"}')).toBe(0);
    expect(await sample(metrics, 'parley_jobs_in_flight{kind="summary"}')).toBe(1);
    expect(await sample(metrics, "parley_reply_followers")).toBe(0);
  });

  it("keeps two registries apart", async () => {
    const a = new Metrics();
    const b = new Metrics();
    a.redisErrors("commands")();
    expect(await sample(a, 'parley_redis_errors_total{connection="commands"}')).toBe(1);
    expect(await sample(b, 'parley_redis_errors_total{connection="commands"}')).toBeNull();
  });
});
