import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { UpstreamConfig } from "../../src/config.ts";
import { createOpenAICompatibleProvider } from "../../src/providers/openai-compatible.ts";
import { withResilience } from "../../src/providers/resilient.ts";
import type { ChatChunk, ChatMessage, ChatProvider, ChatRequest } from "../../src/providers/types.ts";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { startRawUpstream, type RawUpstream } from "./raw-upstream.ts";

/**
 * Tool calls, reasoning, logprobs and several choices, read from the shapes
 * OpenAI, vLLM and Together really send (exact bytes through the raw
 * upstream), and the request passed on as given.
 */

let raw: RawUpstream;
let fake: FakeUpstream;

const config = (base_url: string): UpstreamConfig => ({
  name: "u",
  base_url,
  api_key: "",
  models: ["m"],
  strip_prefix: true,
  timeout_ms: 20_000,
});

beforeAll(async () => {
  raw = await startRawUpstream();
  fake = await startFakeUpstream();
});
afterAll(async () => {
  await raw?.close();
  await fake?.close();
});
beforeEach(() => fake.reset());

const request = (params: Record<string, unknown> = {}, messages: ChatMessage[] = [{ role: "user", content: "weather?" }]): ChatRequest => ({
  model: "m",
  messages,
  params,
});
const live = () => new AbortController().signal;

async function chunksOf(provider: ChatProvider, req: ChatRequest): Promise<ChatChunk[]> {
  const out: ChatChunk[] = [];
  for await (const c of provider.streamChat(req, live())) out.push(c);
  return out;
}

/** The upstream answers these payloads as an event stream, then [DONE]. */
function answerWith(payloads: object[]) {
  raw.answer({ parts: [...payloads.map((p) => `data: ${JSON.stringify(p)}\n\n`), "data: [DONE]\n\n"] });
}
const chunk = (delta: object, finish: string | null = null, index = 0, extra: object = {}) => ({
  id: "c",
  object: "chat.completion.chunk",
  choices: [{ index, delta, finish_reason: finish, logprobs: null, ...extra }],
});
const USAGE = { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 };

/** The delta chunks that carry something, without the empty ones (signs of life). */
const said = (chunks: ChatChunk[]) =>
  chunks.filter((c) => c.type === "delta" && (c.content || c.reasoning || c.toolCalls || c.logprobs));

describe("streamed tool calls", () => {
  it("OpenAI's shape: id, type and name on the first fragment, arguments in many fragments, two calls in parallel", async () => {
    answerWith([
      chunk({ role: "assistant", content: null }),
      chunk({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"ci' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: 'ty":"Pa' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: 'ris"}' } }] }),
      chunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "get_time", arguments: "" } }] }),
      chunk({ tool_calls: [{ index: 1, function: { arguments: "{}" } }] }),
      chunk({}, "tool_calls"),
      { id: "c", object: "chat.completion.chunk", choices: [], usage: USAGE },
    ]);
    const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request());
    expect(chunks[0]).toEqual({ type: "delta", choice: 0, role: "assistant" });
    expect(said(chunks).map((c) => c.type === "delta" && c.toolCalls)).toEqual([
      [{ index: 0, id: "call_a", type: "function", function: { name: "get_weather", arguments: "" } }],
      [{ index: 0, function: { arguments: '{"ci' } }],
      [{ index: 0, function: { arguments: 'ty":"Pa' } }],
      [{ index: 0, function: { arguments: 'ris"}' } }],
      [{ index: 1, id: "call_b", type: "function", function: { name: "get_time", arguments: "" } }],
      [{ index: 1, function: { arguments: "{}" } }],
    ]);
    expect(chunks.at(-1)).toEqual({ type: "finish", choice: 0, finishReason: "tool_calls", usage: USAGE });
  });

  it("vLLM's shape: the first fragment carries no arguments, content is an empty string", async () => {
    answerWith([
      chunk({ role: "assistant", content: "" }),
      chunk({ tool_calls: [{ id: "chatcmpl-tool-1", type: "function", index: 0, function: { name: "lookup" } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"q": ' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '"x"}' } }] }),
      chunk({ content: "" }, "tool_calls"),
    ]);
    const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request());
    expect(said(chunks).map((c) => c.type === "delta" && c.toolCalls)).toEqual([
      [{ index: 0, id: "chatcmpl-tool-1", type: "function", function: { name: "lookup" } }],
      [{ index: 0, function: { arguments: '{"q": ' } }],
      [{ index: 0, function: { arguments: '"x"}' } }],
    ]);
    expect(chunks.at(-1)).toMatchObject({ type: "finish", finishReason: "tool_calls" });
  });

  it("Together's shape: id and type repeated on every fragment, kept as sent", async () => {
    answerWith([
      chunk({ role: "assistant" }),
      chunk({ tool_calls: [{ index: 0, id: "call_t", type: "function", function: { name: "f", arguments: '{"a"' } }] }),
      chunk({ tool_calls: [{ index: 0, id: "call_t", type: "function", function: { arguments: ":1}" } }] }),
      chunk({}, "tool_calls"),
    ]);
    const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request());
    expect(said(chunks).map((c) => c.type === "delta" && c.toolCalls)).toEqual([
      [{ index: 0, id: "call_t", type: "function", function: { name: "f", arguments: '{"a"' } }],
      [{ index: 0, id: "call_t", type: "function", function: { arguments: ":1}" } }],
    ]);
  });
});

describe("calls sent without an id or type (some local servers)", () => {
  it("get an id and type on their first fragment, as the SDKs need; later fragments pass as sent", async () => {
    answerWith([
      chunk({ role: "assistant" }),
      chunk({ tool_calls: [{ index: 0, function: { name: "f", arguments: "{" } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: "}" } }] }),
      chunk({}, "tool_calls"),
    ]);
    const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request());
    const [first, second] = said(chunks).map((c) => c.type === "delta" && c.toolCalls);
    expect(first).toEqual([{ index: 0, id: expect.stringMatching(/^call_\w{24}$/), type: "function", function: { name: "f", arguments: "{" } }]);
    expect(second).toEqual([{ index: 0, function: { arguments: "}" } }]);

    raw.answer({
      headers: { "content-type": "application/json" },
      parts: [JSON.stringify({ choices: [{ index: 0, message: { role: "assistant", content: null, tool_calls: [{ type: "function", function: { name: "f", arguments: "{}" } }] }, finish_reason: "tool_calls" }] })],
    });
    const result = await createOpenAICompatibleProvider(config(raw.baseURL)).completeChat(request(), live());
    expect(result.choices[0]?.toolCalls).toEqual([{ id: expect.stringMatching(/^call_\w{24}$/), type: "function", function: { name: "f", arguments: "{}" } }]);
  });
});

describe("reasoning and logprobs", () => {
  it("reads reasoning from `reasoning_content` and from `reasoning`, apart from the content", async () => {
    for (const field of ["reasoning_content", "reasoning"]) {
      answerWith([
        chunk({ role: "assistant", content: "" }),
        chunk({ [field]: "Think" }),
        chunk({ [field]: "ing." }),
        chunk({ content: "Answer." }),
        chunk({}, "stop"),
      ]);
      const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request());
      expect(said(chunks)).toEqual([
        { type: "delta", choice: 0, reasoning: "Think" },
        { type: "delta", choice: 0, reasoning: "ing." },
        { type: "delta", choice: 0, content: "Answer." },
      ]);
    }
  });

  it("passes each chunk's logprobs on with it", async () => {
    const lp = (token: string) => ({ content: [{ token, logprob: -0.5, bytes: [1], top_logprobs: [] }], refusal: null });
    answerWith([chunk({ role: "assistant", content: "" }), chunk({ content: "a" }, null, 0, { logprobs: lp("a") }), chunk({ content: "b" }, "stop", 0, { logprobs: lp("b") })]);
    const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request({ logprobs: true, top_logprobs: 0 }));
    expect(said(chunks)).toEqual([
      { type: "delta", choice: 0, content: "a", logprobs: lp("a") },
      { type: "delta", choice: 0, content: "b", logprobs: lp("b") },
    ]);
  });
});

describe("several choices (n = 2)", () => {
  it("streams every choice with its index and ends each with its own finish, usage on the last", async () => {
    answerWith([
      chunk({ role: "assistant", content: "" }, null, 0),
      chunk({ role: "assistant", content: "" }, null, 1),
      chunk({ content: "zero" }, null, 0),
      chunk({ content: "one" }, null, 1),
      chunk({}, "stop", 1),
      chunk({}, "length", 0),
      { id: "c", object: "chat.completion.chunk", choices: [], usage: USAGE },
    ]);
    const chunks = await chunksOf(createOpenAICompatibleProvider(config(raw.baseURL)), request({ n: 2 }));
    expect(said(chunks)).toEqual([
      { type: "delta", choice: 0, content: "zero" },
      { type: "delta", choice: 1, content: "one" },
    ]);
    expect(chunks.filter((c) => c.type === "finish")).toEqual([
      { type: "finish", choice: 0, finishReason: "length", usage: null },
      { type: "finish", choice: 1, finishReason: "stop", usage: USAGE },
    ]);
  });

  it("answers a non-streamed call with every choice: tool calls with content null, reasoning, logprobs", async () => {
    const logprobs = { content: [{ token: "x", logprob: -1, bytes: null, top_logprobs: [] }] };
    raw.answer({
      headers: { "content-type": "application/json" },
      parts: [
        JSON.stringify({
          id: "c",
          object: "chat.completion",
          created: 1,
          model: "m",
          choices: [
            {
              index: 1,
              message: { role: "assistant", content: "x", reasoning: "second thought" },
              finish_reason: "stop",
              logprobs,
            },
            {
              index: 0,
              message: {
                role: "assistant",
                content: null,
                reasoning_content: "first thought",
                tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } }],
              },
              finish_reason: "tool_calls",
              logprobs: null,
            },
          ],
          usage: USAGE,
        }),
      ],
    });
    const result = await createOpenAICompatibleProvider(config(raw.baseURL)).completeChat(request({ n: 2 }), live());
    expect(result).toEqual({
      choices: [
        {
          content: null,
          reasoning: "first thought",
          toolCalls: [{ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } }],
          finishReason: "tool_calls",
        },
        { content: "x", reasoning: "second thought", logprobs, finishReason: "stop" },
      ],
      usage: USAGE,
    });
  });
});

describe("the request, as given", () => {
  it("sends tools, tool_choice, parallel_tool_calls and a json schema in the client's key order, and messages with parts, tool calls and names", async () => {
    const messages: ChatMessage[] = [
      { role: "developer", content: "Use tools." },
      { role: "user", name: "ann", content: [{ type: "text", text: "look" }, { type: "image_url", image_url: { url: "https://example.com/a.png", detail: "low" } }] },
      { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }] },
      { role: "tool", tool_call_id: "call_1", content: "42" },
    ];
    const params = {
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { z: { type: "string" }, a: { type: "number" } } } } }],
      tool_choice: "auto",
      parallel_tool_calls: false,
      response_format: { type: "json_schema", json_schema: { name: "s", schema: { properties: { reasoning: {}, answer: {} } } } },
      temperature: 0.2,
      send_reasoning: true,
    };
    const provider = createOpenAICompatibleProvider(config(fake.baseURL));
    await chunksOf(provider, request(params, messages));
    const sent = fake.requests[0]!;
    const { send_reasoning: _ours, ...upstreamParams } = params;
    // The raw text, so key order counts: model, messages, then the params as the client ordered them.
    expect(sent.raw).toBe(
      JSON.stringify({ model: "m", messages, ...upstreamParams, stream: true, stream_options: { include_usage: true } }),
    );
  });
});

describe("life before the first token", () => {
  it("a model that thinks longer than the first-token limit, sending reasoning, is not failed and called again", async () => {
    fake.setBehaviour({ kind: "ok", reasoning: ["a", "b", "c", "d", "e", "f"], reasoningDelayMs: 150 });
    const provider = withResilience(createOpenAICompatibleProvider(config(fake.baseURL)), {
      maxRetries: 2,
      baseDelayMs: 1,
      maxDelayMs: 10,
      // Shorter than the thinking (6 × 150 ms), longer than each pause in it.
      firstTokenTimeoutMs: 600,
      idleTimeoutMs: 5_000,
    });
    const chunks = await chunksOf(provider, request());
    expect(said(chunks).filter((c) => c.type === "delta" && c.reasoning).length).toBe(6);
    expect(chunks.at(-1)).toMatchObject({ type: "finish", finishReason: "stop" });
    expect(fake.requests).toHaveLength(1);
  });
});
