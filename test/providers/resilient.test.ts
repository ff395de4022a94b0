import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { UpstreamConfig } from "../../src/config.ts";
import { createOpenAICompatibleProvider, parseRetryAfter } from "../../src/providers/openai-compatible.ts";
import { withResilience, type ResiliencePolicy } from "../../src/providers/resilient.ts";
import { ProviderError, type ChatChunk } from "../../src/providers/types.ts";
import { fakeTokens, startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { freePort } from "../support/processes.ts";

let upstream: FakeUpstream;
let sleeps: number[];

beforeAll(async () => {
  upstream = await startFakeUpstream();
});
afterAll(() => upstream?.close());
beforeEach(() => {
  upstream.reset();
  sleeps = [];
});

const upstreamConfig = (u: Partial<UpstreamConfig> = {}): UpstreamConfig => ({
  name: "fake",
  base_url: upstream.baseURL,
  api_key: "",
  models: ["m"],
  strip_prefix: true,
  timeout_ms: 10_000,
  ...u,
});

function provider(policy: Partial<ResiliencePolicy> = {}, u: Partial<UpstreamConfig> = {}) {
  return withResilience(createOpenAICompatibleProvider(upstreamConfig(u)), {
    maxRetries: 3,
    baseDelayMs: 100,
    maxDelayMs: 5_000,
    firstTokenTimeoutMs: 5_000,
    idleTimeoutMs: 5_000,
    random: () => 0.5,
    // Records the waits instead of taking them: the tests assert the schedule, not the clock.
    sleep: async (ms) => void sleeps.push(ms),
    ...policy,
  });
}

const request = { model: "m", messages: [{ role: "user" as const, content: "retry me" }], params: {} };

async function drain(iter: AsyncIterable<ChatChunk>) {
  const deltas: string[] = [];
  try {
    for await (const c of iter) if (c.type === "delta" && c.content !== undefined) deltas.push(c.content);
    return { deltas, error: undefined };
  } catch (error) {
    return { deltas, error: error as ProviderError };
  }
}

describe("retries before the first token", () => {
  it("retries 429 and 5xx with exponential backoff and jitter, then succeeds", async () => {
    upstream.queueBehaviour({ kind: "status", status: 503 });
    upstream.queueBehaviour({ kind: "status", status: 500 });
    upstream.queueBehaviour({ kind: "status", status: 429 });
    const { deltas, error } = await drain(provider().streamChat(request, new AbortController().signal));
    expect(error).toBeUndefined();
    expect(deltas.join("")).toBe("Reply to: retry me");
    expect(upstream.requests).toHaveLength(4);
    expect(sleeps).toEqual([50, 100, 200]); // half (the jitter) of 100, 200, 400
  });

  it("honours Retry-After", async () => {
    upstream.queueBehaviour({ kind: "status", status: 429, headers: { "retry-after": "2" } });
    const { error } = await drain(provider().streamChat(request, new AbortController().signal));
    expect(error).toBeUndefined();
    expect(sleeps).toEqual([2_000]);
  });

  it("gives up at once when Retry-After is longer than the longest wait", async () => {
    upstream.queueBehaviour({ kind: "status", status: 429, headers: { "retry-after": "60" } });
    const { error } = await drain(provider().streamChat(request, new AbortController().signal));
    expect(error).toMatchObject({ code: "upstream_error", upstreamStatus: 429, retryAfterMs: 60_000 });
    expect(upstream.requests).toHaveLength(1);
  });

  it("stops after the bounded number of retries with the last error", async () => {
    upstream.setBehaviour({ kind: "status", status: 502 });
    const { error } = await drain(provider({ maxRetries: 2 }).streamChat(request, new AbortController().signal));
    expect(error).toMatchObject({ code: "upstream_error", upstreamStatus: 502 });
    expect(upstream.requests).toHaveLength(3);
  });

  it("does not retry a request the upstream rejects (400)", async () => {
    upstream.setBehaviour({ kind: "status", status: 400 });
    const { error } = await drain(provider().streamChat(request, new AbortController().signal));
    expect(error).toMatchObject({ upstreamStatus: 400 });
    expect(upstream.requests).toHaveLength(1);
  });

  it("retries a refused connection", async () => {
    const port = await freePort();
    const { error } = await drain(
      provider({ maxRetries: 2 }, { base_url: `http://127.0.0.1:${port}/v1` }).streamChat(request, new AbortController().signal),
    );
    expect(error).toMatchObject({ code: "upstream_unreachable" });
    expect(sleeps).toHaveLength(2);
  });

  it("times out a missing first token, retries, and reports a timeout", async () => {
    upstream.setBehaviour({ kind: "hang" });
    const { error } = await drain(
      provider({ maxRetries: 1, firstTokenTimeoutMs: 150 }).streamChat(request, new AbortController().signal),
    );
    expect(error).toMatchObject({ code: "upstream_timeout", status: 504 });
    expect(upstream.requests).toHaveLength(2);
    for (let i = 0; i < 50 && !upstream.requests.every((r) => r.closedEarly); i++) await new Promise((r) => setTimeout(r, 10));
    expect(upstream.requests.every((r) => r.closedEarly)).toBe(true);
  });

  it("retries non-streamed calls too", async () => {
    upstream.queueBehaviour({ kind: "status", status: 503 });
    const result = await provider().completeChat(request, new AbortController().signal);
    expect(result.choices[0]?.content).toBe("Reply to: retry me");
    expect(upstream.requests.map((r) => r.body.stream)).toEqual([false, false]);
  });
});

describe("after the first token", () => {
  it("never retries: a dropped stream fails with what had arrived", async () => {
    upstream.setBehaviour({ kind: "drop", afterTokens: 2 });
    const { deltas, error } = await drain(provider().streamChat(request, new AbortController().signal));
    expect(deltas).toEqual(fakeTokens("Reply to: retry me").slice(0, 2));
    expect(error).toMatchObject({ code: "upstream_disconnected" });
    expect(upstream.requests).toHaveLength(1);
  });

  it("fails a stream that goes quiet for longer than the idle limit", async () => {
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 1_000 });
    const { deltas, error } = await drain(provider({ idleTimeoutMs: 150 }).streamChat(request, new AbortController().signal));
    expect(deltas).toEqual(fakeTokens("Reply to: retry me").slice(0, 1));
    expect(error).toMatchObject({ code: "upstream_timeout", status: 504 });
    expect((error as Error).message).toMatch(/150 ms/);
    expect(upstream.requests).toHaveLength(1);
  });

  it("restarts the idle limit with every chunk: a stream longer than the limit whose chunks come within it completes", async () => {
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 40, replyTokens: 12 });
    const { deltas, error } = await drain(provider({ idleTimeoutMs: 150 }).streamChat(request, new AbortController().signal));
    expect(error).toBeUndefined();
    expect(deltas).toEqual(Array.from({ length: 12 }, (_, i) => ` w${i}`));
  });

  it("does not count the consumer's time between chunks against the idle limit", async () => {
    upstream.setBehaviour({ kind: "ok", replyTokens: 3 });
    const deltas: string[] = [];
    for await (const c of provider({ idleTimeoutMs: 100 }).streamChat(request, new AbortController().signal)) {
      if (c.type !== "delta" || c.content === undefined) continue;
      deltas.push(c.content);
      // The consumer (a writer waiting for Redis) takes longer than the limit before asking for the next chunk.
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    expect(deltas).toEqual([" w0", " w1", " w2"]);
  });
});

describe("an upstream's timeout_ms", () => {
  it("ends a stream that outlives it, keeping what it said and not trying again", async () => {
    // A token every 100 ms for 5 s; the upstream allows 1 s; idle and first-token limits never fire.
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100, replyTokens: 50 });
    const { deltas, error } = await drain(provider({}, { timeout_ms: 1_000 }).streamChat(request, new AbortController().signal));
    expect(error).toMatchObject({ code: "upstream_timeout", status: 504 });
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.length).toBeLessThan(50);
    expect(deltas).toEqual(Array.from({ length: deltas.length }, (_, i) => ` w${i}`));
    expect(upstream.requests).toHaveLength(1);
  });

  it("is tried again when it ran out before the first token", async () => {
    upstream.queueBehaviour({ kind: "ok", ttftMs: 2_000 });
    const { deltas, error } = await drain(provider({}, { timeout_ms: 300 }).streamChat(request, new AbortController().signal));
    expect(error).toBeUndefined();
    expect(deltas.join("")).toBe("Reply to: retry me");
    expect(upstream.requests).toHaveLength(2);
  });
});

describe("Retry-After", () => {
  it("reads seconds and HTTP dates", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter("0.5")).toBe(500);
    expect(parseRetryAfter(new Date(10_000).toUTCString(), 4_000)).toBe(6_000);
    expect(parseRetryAfter("soon")).toBeNull();
    expect(parseRetryAfter(null)).toBeNull();
  });
});
