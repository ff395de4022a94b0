import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { UpstreamConfig } from "../../src/config.ts";
import { createOpenAICompatibleProvider } from "../../src/providers/openai-compatible.ts";
import { ProviderError, type ChatChunk, type ChatProvider } from "../../src/providers/types.ts";
import { fakeTokens, startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { freePort } from "../support/processes.ts";

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

const request = (params: Record<string, unknown> = {}) => ({
  model: "fake-model",
  messages: [
    { role: "system" as const, content: "Be brief." },
    { role: "user" as const, content: "hello upstream" },
  ],
  params,
});

async function drain(iter: AsyncIterable<ChatChunk>) {
  const deltas: string[] = [];
  let finish: ChatChunk | undefined;
  let error: unknown;
  try {
    for await (const c of iter) {
      if (c.type === "delta") deltas.push(c.content);
      else finish = c;
    }
  } catch (err) {
    error = err;
  }
  return { deltas, finish, error };
}

describe("OpenAI-compatible upstream", () => {
  it("streams deltas and ends with the finish reason and usage", async () => {
    const { deltas, finish, error } = await drain(provider.streamChat(request(), new AbortController().signal));
    expect(error).toBeUndefined();
    expect(deltas).toEqual(fakeTokens("Reply to: hello upstream"));
    expect(finish).toMatchObject({ type: "finish", finishReason: "stop", usage: { completion_tokens: deltas.length } });
  });

  it("sends the messages, our stream flag and every unknown sampling field untouched", async () => {
    await drain(
      provider.streamChat(
        request({ temperature: 0.3, top_k: 40, repetition_penalty: 1.1, stream: false, model: "ignored" }),
        new AbortController().signal,
      ),
    );
    const sent = upstream.requests[0]!;
    expect(sent.body).toEqual({
      model: "fake-model",
      messages: request().messages,
      temperature: 0.3,
      top_k: 40,
      repetition_penalty: 1.1,
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(sent.headers.authorization).toBe(`Bearer ${SECRET}`);
  });

  it("asks without streaming for a whole completion", async () => {
    const result = await provider.completeChat(request({ seed: 7 }), new AbortController().signal);
    expect(result).toMatchObject({ content: "Reply to: hello upstream", finishReason: "stop" });
    expect(upstream.requests[0]?.body).toMatchObject({ stream: false, seed: 7 });
    expect(upstream.requests[0]?.body.stream_options).toBeUndefined();
  });

  it("reports an upstream 500 with its status and message, never the key", async () => {
    upstream.setBehaviour({ kind: "status", status: 500, body: { error: { message: "model crashed" } } });
    const { error } = await drain(provider.streamChat(request(), new AbortController().signal));
    expect(error).toBeInstanceOf(ProviderError);
    expect(error).toMatchObject({ code: "upstream_error", upstreamStatus: 500, status: 502 });
    expect((error as Error).message).toContain("model crashed");
    expect((error as Error).message).not.toContain(SECRET);
  });

  it("keeps the deltas that came before the connection dropped", async () => {
    upstream.setBehaviour({ kind: "drop", afterTokens: 2 });
    const { deltas, finish, error } = await drain(provider.streamChat(request(), new AbortController().signal));
    expect(deltas).toEqual(fakeTokens("Reply to: hello upstream").slice(0, 2));
    expect(finish).toBeUndefined();
    expect(error).toMatchObject({ code: "upstream_disconnected" });
  });

  it("says the upstream is unreachable when nothing listens", async () => {
    const port = await freePort();
    const down = createOpenAICompatibleProvider(config({ base_url: `http://127.0.0.1:${port}/v1` }));
    const { error } = await drain(down.streamChat(request(), new AbortController().signal));
    expect(error).toMatchObject({ code: "upstream_unreachable" });
  });

  it("times out with a 504-class error", async () => {
    upstream.setBehaviour({ kind: "hang" });
    const slow = createOpenAICompatibleProvider(config({ timeout_ms: 200 }));
    const { error } = await drain(slow.streamChat(request(), new AbortController().signal));
    expect(error).toMatchObject({ code: "upstream_timeout", status: 504 });
  });

  it("stops when aborted, with an AbortError", async () => {
    upstream.setBehaviour({ kind: "hang" });
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    const { error } = await drain(provider.streamChat(request(), ctl.signal));
    expect((error as Error).name).toBe("AbortError");
  });
});
