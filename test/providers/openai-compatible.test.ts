import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { UpstreamConfig } from "../../src/config.ts";
import { createOpenAICompatibleProvider } from "../../src/providers/openai-compatible.ts";
import { ProviderError, type ChatChunk, type ChatProvider, type ChatRequest } from "../../src/providers/types.ts";
import { fakeTokens, startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { freePort } from "../support/processes.ts";
import { startRawUpstream } from "./raw-upstream.ts";

let upstream: FakeUpstream;
let provider: ChatProvider;
const SECRET = "sk-very-secret-key";

const config = (u: Partial<UpstreamConfig> = {}): UpstreamConfig => ({
  name: "fake",
  base_url: upstream.baseURL,
  api_key: SECRET,
  models: ["fake-model"],
  strip_prefix: true,
  timeout_ms: 10_000,
  ...u,
});

beforeAll(async () => {
  upstream = await startFakeUpstream();
  provider = createOpenAICompatibleProvider(config());
});
afterAll(() => upstream?.close());
beforeEach(() => upstream.reset());

const messages = [
  { role: "system" as const, content: "Be brief." },
  { role: "user" as const, content: "hello upstream" },
];
const request = (params: Record<string, unknown> = {}): ChatRequest => ({ model: "fake-model", messages, params });
const REPLY = "Reply to: hello upstream";
// The fake counts words: "Be brief." + "hello upstream" = 4; the reply is 4.
const USAGE = { prompt_tokens: 4, completion_tokens: 4, total_tokens: 8 };
const live = () => new AbortController().signal;

async function drain(iter: AsyncIterable<ChatChunk>) {
  const deltas: string[] = [];
  const finishes: ChatChunk[] = [];
  let error: unknown;
  try {
    for await (const c of iter) {
      if (c.type !== "delta") finishes.push(c);
      else if (c.content !== undefined) deltas.push(c.content);
    }
  } catch (err) {
    error = err;
  }
  return { deltas, finish: finishes[0], finishes, error };
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => expect.unreachable("should have rejected"),
    (err: unknown) => err,
  );

describe("OpenAI-compatible provider", () => {
  it("is named after its upstream", () => {
    expect(provider.name).toBe("upstream:fake");
  });

  it("streams the reply as deltas, then one finish with the reason and usage", async () => {
    const { deltas, finishes, error } = await drain(provider.streamChat(request(), live()));
    expect(error).toBeUndefined();
    expect(deltas).toEqual(fakeTokens(REPLY));
    expect(finishes).toEqual([{ type: "finish", choice: 0, finishReason: "stop", usage: USAGE }]);
  });

  it("sends the messages, our stream flag and every unknown sampling field untouched", async () => {
    await drain(
      provider.streamChat(
        request({ temperature: 0.3, top_k: 40, repetition_penalty: 1.1, stream: false, model: "ignored", messages: [] }),
        live(),
      ),
    );
    expect(upstream.requests).toHaveLength(1);
    const sent = upstream.requests[0]!;
    expect(sent.body).toEqual({
      model: "fake-model",
      messages,
      temperature: 0.3,
      top_k: 40,
      repetition_penalty: 1.1,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(sent.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it("adds include_usage to the stream_options the client gave", async () => {
    await drain(provider.streamChat(request({ stream_options: { continuous_usage_stats: true } }), live()));
    expect(upstream.requests[0]?.body.stream_options).toEqual({ continuous_usage_stats: true, include_usage: true });
  });

  it("asks without streaming for a whole completion", async () => {
    const result = await provider.completeChat(
      request({ seed: 7, top_k: 5, stream: true, stream_options: { include_usage: true } }),
      live(),
    );
    expect(result).toEqual({ choices: [{ content: REPLY, finishReason: "stop" }], usage: USAGE });
    expect(upstream.requests[0]?.body).toEqual({ model: "fake-model", messages, seed: 7, top_k: 5, stream: false });
  });

  it("sends a placeholder key to upstreams configured without one", async () => {
    const keyless = createOpenAICompatibleProvider(config({ api_key: "" }));
    await keyless.completeChat(request(), live());
    expect(upstream.requests[0]?.headers.authorization).toBe("Bearer unused");
  });

  it("reports an upstream 500 with its status and message, never the key", async () => {
    upstream.setBehaviour({
      kind: "status",
      status: 500,
      body: { error: { message: `model crashed (key ${SECRET})`, type: "server_error", param: null, code: null } },
    });
    const { deltas, finish, error } = await drain(provider.streamChat(request(), live()));
    expect(deltas).toEqual([]);
    expect(finish).toBeUndefined();
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_error", status: 502, upstreamStatus: 500 });
    expect((error as Error).message).toMatch(/^upstream fake answered 500: model crashed/);
    expect((error as Error).message).not.toContain(SECRET);

    const whole = await rejection(provider.completeChat(request(), live()));
    expect(whole).toMatchObject({ code: "upstream_error", status: 502, upstreamStatus: 500 });
  });

  it("reports a 429 as an upstream error carrying that status", async () => {
    upstream.setBehaviour({ kind: "status", status: 429, headers: { "retry-after": "3" } });
    const { error } = await drain(provider.streamChat(request(), live()));
    expect(error).toMatchObject({ code: "upstream_error", upstreamStatus: 429 });
    expect(upstream.requests).toHaveLength(1); // the SDK's own retries are off
  });

  it("keeps the upstream's message short", async () => {
    upstream.setBehaviour({ kind: "status", status: 500, body: { error: { message: "x".repeat(5000) } } });
    const { error } = await drain(provider.streamChat(request(), live()));
    expect((error as Error).message.length).toBeLessThan(400);
  });

  it("keeps the deltas that came before the connection dropped", async () => {
    upstream.setBehaviour({ kind: "drop", afterTokens: 2 });
    const { deltas, finish, error } = await drain(provider.streamChat(request(), live()));
    expect(deltas).toEqual(fakeTokens(REPLY).slice(0, 2));
    expect(finish).toBeUndefined();
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_disconnected", status: 502, upstreamStatus: null });
  });

  it("calls a drop before any delta unreachable", async () => {
    upstream.setBehaviour({ kind: "drop", afterTokens: 0 });
    const { deltas, error } = await drain(provider.streamChat(request(), live()));
    expect(deltas).toEqual([]);
    expect(error).toMatchObject({ code: "upstream_unreachable" });

    const whole = await rejection(provider.completeChat(request(), live()));
    expect(whole).toMatchObject({ code: "upstream_unreachable", status: 502 });
  });

  it("says the upstream is unreachable when nothing listens", async () => {
    const port = await freePort();
    const down = createOpenAICompatibleProvider(config({ base_url: `http://127.0.0.1:${port}/v1` }));
    const { error } = await drain(down.streamChat(request(), live()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_unreachable", status: 502, upstreamStatus: null });
    expect((error as Error).message).not.toContain(SECRET);
    await expect(down.completeChat(request(), live())).rejects.toMatchObject({ code: "upstream_unreachable" });
  });

  it("times out with a 504-class error when the upstream does not answer", async () => {
    upstream.setBehaviour({ kind: "hang" });
    const slow = createOpenAICompatibleProvider(config({ timeout_ms: 200 }));
    const { error } = await drain(slow.streamChat(request(), live()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_timeout", status: 504, upstreamStatus: null });
    await expect(slow.completeChat(request(), live())).rejects.toMatchObject({ code: "upstream_timeout", status: 504 });
  });

  it("bounds a streamed call by timeout_ms, not only its headers, keeping the deltas so far", async () => {
    // A token every 100 ms for 5 s against a 1 s limit.
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100, replyTokens: 50 });
    const limited = createOpenAICompatibleProvider(config({ timeout_ms: 1_000 }));
    const { deltas, finish, error } = await drain(limited.streamChat(request(), live()));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_timeout", status: 504, upstreamStatus: null });
    expect((error as Error).message).toBe("upstream fake did not finish within 1000 ms");
    expect(finish).toBeUndefined();
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.length).toBeLessThan(50); // all 50 would take 5 s
    await expect.poll(() => upstream.requests[0]?.closedEarly, { timeout: 5_000 }).toBe(true);
  });

  it("bounds a non-streamed call whose body never ends by timeout_ms", { timeout: 20_000 }, async () => {
    const raw = await startRawUpstream();
    try {
      raw.answer({ headers: { "content-type": "application/json" }, parts: ['{"id":"x","choices":['], hangAfter: true });
      const limited = createOpenAICompatibleProvider(config({ base_url: raw.baseURL, timeout_ms: 500 }));
      const whole = await rejection(limited.completeChat(request(), live()));
      expect(whole).toBeInstanceOf(ProviderError);
      expect(whole).toMatchObject({ code: "upstream_timeout", status: 504 });
    } finally {
      await raw.close();
    }
  });

  it("ends with an AbortError, not a timeout, when the caller aborts first", async () => {
    upstream.setBehaviour({ kind: "hang" });
    const limited = createOpenAICompatibleProvider(config({ timeout_ms: 5_000 }));
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const { error } = await drain(limited.streamChat(request(), ctl.signal));
    expect((error as Error).name).toBe("AbortError");
  });

  it("masks keys in what the upstream said: ours, any sk- key, bearer tokens, long tokens", async () => {
    const other = "sk-proj-Zx81HqA0b7c6d5e4f3g2h1i0";
    const vendor = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4";
    upstream.setBehaviour({
      kind: "status",
      status: 401,
      body: {
        error: {
          message: `Incorrect API key provided: ${SECRET}. Also ${other}, Authorization: Bearer tok.en-123 and ${vendor}. See https://platform.example.com/account/api-keys.`,
          type: "invalid_request_error",
          code: "invalid_api_key",
        },
      },
    });
    const { error } = await drain(provider.streamChat(request(), live()));
    const message = (error as Error).message;
    expect(message).toMatch(/^upstream fake answered 401: Incorrect API key provided: \[masked\]/);
    for (const key of [SECRET, other, "tok.en-123", vendor]) expect(message).not.toContain(key);
    expect(message).toContain("https://platform.example.com/account/api-keys");
  });

  it("stops promptly with an AbortError when aborted while the upstream hangs", async () => {
    upstream.setBehaviour({ kind: "hang" });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const started = Date.now();
    const { deltas, finish, error } = await drain(provider.streamChat(request(), ctl.signal));
    expect(Date.now() - started).toBeLessThan(1000);
    expect(deltas).toEqual([]);
    expect(finish).toBeUndefined();
    expect((error as Error).name).toBe("AbortError");

    const ctl2 = new AbortController();
    setTimeout(() => ctl2.abort(), 100);
    const whole = await rejection(provider.completeChat(request(), ctl2.signal));
    expect((whole as Error).name).toBe("AbortError");
  });

  it("ends an aborted stream with an AbortError, not a finish", async () => {
    // The SDK ends its iterator quietly on an abort mid-stream; the provider must not call that finished.
    upstream.setBehaviour({ kind: "ok", tokenDelayMs: 100 });
    const ctl = new AbortController();
    const deltas: string[] = [];
    const chunks: ChatChunk[] = [];
    const error = await (async () => {
      for await (const c of provider.streamChat(request(), ctl.signal)) {
        chunks.push(c);
        if (c.type === "delta" && c.content !== undefined) deltas.push(c.content);
        if (deltas.length === 2) ctl.abort();
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(deltas).toEqual(fakeTokens(REPLY).slice(0, 2));
    expect(chunks.some((c) => c.type === "finish")).toBe(false);
    expect((error as Error).name).toBe("AbortError");
  });
});

describe("fake upstream", () => {
  it("ends hanging requests when closed", async () => {
    const own = await startFakeUpstream();
    own.setBehaviour({ kind: "hang" });
    const hanging = createOpenAICompatibleProvider(config({ base_url: own.baseURL }));
    const reply = drain(hanging.streamChat(request(), live()));
    await expect.poll(() => own.requests.length).toBe(1);
    const started = Date.now();
    await own.close();
    const { error } = await reply;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(error).toMatchObject({ code: "upstream_unreachable" });
  });

  it("answers one-shot behaviours in order before the standing one", async () => {
    upstream.queueBehaviour({ kind: "status", status: 503 });
    upstream.queueBehaviour({ kind: "ok", text: "queued answer" });
    await expect(provider.completeChat(request(), live())).rejects.toMatchObject({ upstreamStatus: 503 });
    expect((await provider.completeChat(request(), live())).choices[0]?.content).toBe("queued answer");
    expect((await provider.completeChat(request(), live())).choices[0]?.content).toBe(REPLY);
  });

  it("lists a model", async () => {
    const res = await fetch(`${upstream.baseURL}/models`);
    expect(await res.json()).toMatchObject({ object: "list", data: [{ id: "fake-model" }] });
  });
});
