import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { toolLoop, type FakeToolCall } from "../support/fake-upstream.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { openaiAt } from "../support/openai-clients.ts";
import { ResponseResource, specIssues, StreamingEvent } from "../support/open-responses.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * The AI SDK's default OpenAI provider, `openai(model)`, which speaks the Responses API, against Parley's
 * /v1/responses and a fake chat-completions upstream: generateText, streamText, a tool loop with a step
 * limit, and the provider options that continue a chain or store nothing. Every response body and every
 * raw streamed event is checked against the Open Responses schemas.
 */

const ctx = useServiceWithFakeUpstream();
const provider = () => createOpenAI({ baseURL: `${ctx.service.url}/v1`, apiKey: TEST_API_KEY });
const upstreamMessages = (i: number) => ctx.upstream.requests[i]?.body.messages;
/** The SDK sends a prompt as one input_text part, which reaches the upstream as a plain string. */
const said = (text: string) => text;
const replyTo = (text: string) => ctx.upstream.replyTextFor(said(text));
/** Keep each step's request and response body, to check what went over the wire. */
const include = { requestBody: true, responseBody: true };

const lisbon: FakeToolCall = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' };
const tools = {
  get_weather: tool({
    description: "The weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `sunny in ${city}`,
  }),
};

/** Each step's raw response body (generateText keeps it) conforms to the spec. */
function expectConformingBodies(steps: readonly { response: { body?: unknown } }[]) {
  for (const step of steps) expect(specIssues(ResponseResource, step.response.body)).toEqual([]);
}

/** Runs a streamText result to its end; its raw events conform and are numbered on by one per step. */
async function drain(result: { fullStream: AsyncIterable<{ type: string; rawValue?: unknown; error?: unknown }> }) {
  const raw: { type: string; sequence_number: number }[] = [];
  for await (const part of result.fullStream) {
    if (part.type === "raw") raw.push(part.rawValue as { type: string; sequence_number: number });
    if (part.type === "error") throw part.error;
  }
  for (const e of raw) expect({ type: e.type, issues: specIssues(StreamingEvent, e) }).toEqual({ type: e.type, issues: [] });
  // Each step's stream starts at 0.
  let expected = 0;
  for (const e of raw) {
    if (e.sequence_number === 0) expected = 0;
    expect(e.sequence_number).toBe(expected++);
  }
  return raw;
}

describe("the AI SDK's default provider on /v1/responses", () => {
  it("generateText: the system prompt and prompt reach the upstream; the response is stored and retrievable", async () => {
    const result = await generateText({ model: provider()("fake-model"), system: "Be kind.", prompt: "hello", maxRetries: 0, include });
    expect(result.text).toBe(replyTo("hello"));
    expect(result.finishReason).toBe("stop");
    expect(result.usage).toEqual(expect.objectContaining({ inputTokens: 3, outputTokens: 3 }));
    expectConformingBodies(result.steps);
    expect(upstreamMessages(0)).toEqual([
      { role: "system", content: "Be kind." },
      { role: "user", content: said("hello") },
    ]);
    const responseId = result.providerMetadata?.openai?.responseId as string;
    expect(responseId).toMatch(/^resp_/);
    const stored = await openaiAt(`${ctx.service.url}/v1`).responses.retrieve(responseId);
    expect(stored.output_text).toBe(replyTo("hello"));
  });

  it("streamText: the text arrives in deltas, and the stream's raw events conform", async () => {
    const result = streamText({ model: provider()("fake-model"), prompt: "stream this", includeRawChunks: true, maxRetries: 0 });
    const raw = await drain(result);
    expect(await result.text).toBe(replyTo("stream this"));
    expect(await result.finishReason).toBe("stop");
    expect(raw.filter((e) => e.type === "response.output_text.delta")).toHaveLength(4);
    expect(raw.at(-1)?.type).toBe("response.completed");
  });

  it("generateText with tools and a step limit: the tool runs and the second step sees its result", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const result = await generateText({ model: provider()("fake-model"), prompt: "Lisbon?", tools, stopWhen: stepCountIs(5), maxRetries: 0, include });
    // The second step sends the call and its output back as items (the SDK keeps no item ids for calls).
    expect((result.steps[1]?.request.body as { input: { type?: string }[] }).input.map((i) => i.type ?? "message")).toEqual([
      "message",
      "function_call",
      "function_call_output",
    ]);
    expect(result.text).toBe("Tool said: sunny in Lisbon");
    expect(result.steps.map((s) => s.finishReason)).toEqual(["tool-calls", "stop"]);
    expect(result.steps[0]?.toolCalls).toEqual([expect.objectContaining({ toolCallId: "call_lisbon", toolName: "get_weather", input: { city: "Lisbon" } })]);
    expectConformingBodies(result.steps);
    expect(ctx.upstream.requests).toHaveLength(2);
    expect(ctx.upstream.requests[0]?.body.tools).toEqual([
      expect.objectContaining({ type: "function", function: expect.objectContaining({ name: "get_weather", description: "The weather in a city." }) }),
    ]);
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: said("Lisbon?") },
      { role: "assistant", content: null, tool_calls: [{ id: "call_lisbon", type: "function", function: { name: "get_weather", arguments: lisbon.arguments } }] },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" },
    ]);
  });

  it("streamText with tools and a step limit: the same loop, streamed", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const result = streamText({ model: provider()("fake-model"), prompt: "Lisbon?", tools, stopWhen: stepCountIs(5), includeRawChunks: true, maxRetries: 0 });
    const raw = await drain(result);
    expect(await result.text).toBe("Tool said: sunny in Lisbon");
    expect((await result.steps).map((s) => s.finishReason)).toEqual(["tool-calls", "stop"]);
    expect(raw.filter((e) => e.type === "response.function_call_arguments.done")).toHaveLength(1);
    expect(upstreamMessages(1)?.at(-1)).toEqual({ role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" });
  });

  it("providerOptions.openai.previousResponseId continues the chain: the upstream sees the earlier turn", async () => {
    const first = await generateText({ model: provider()("fake-model"), prompt: "remember 7", maxRetries: 0 });
    const previousResponseId = first.providerMetadata?.openai?.responseId as string;
    const second = await generateText({
      model: provider()("fake-model"),
      prompt: "what number?",
      providerOptions: { openai: { previousResponseId } },
      maxRetries: 0,
    });
    expect(second.text).toBe(replyTo("what number?"));
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: said("remember 7") },
      { role: "assistant", content: replyTo("remember 7") },
      { role: "user", content: said("what number?") },
    ]);
  });

  it("providerOptions.openai.store false: answered, not retrievable", async () => {
    const result = await generateText({ model: provider()("fake-model"), prompt: "forget", providerOptions: { openai: { store: false } }, maxRetries: 0, include });
    expect(result.text).toBe(replyTo("forget"));
    expectConformingBodies(result.steps);
    const id = result.providerMetadata?.openai?.responseId as string;
    const err = await openaiAt(`${ctx.service.url}/v1`).responses.retrieve(id).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404 });
  });

  it("a tool loop with store false sends the whole exchange back each step, and completes", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const result = await generateText({
      model: provider()("fake-model"),
      prompt: "Lisbon?",
      tools,
      stopWhen: stepCountIs(5),
      providerOptions: { openai: { store: false } },
      maxRetries: 0,
      include,
    });
    expectConformingBodies(result.steps);
    expect(result.text).toBe("Tool said: sunny in Lisbon");
    expect(upstreamMessages(1)?.at(-1)).toEqual({ role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" });
  });

  it("a follow-up with the earlier messages sends the assistant's text as an item_reference, which Parley resolves", async () => {
    const first = await generateText({ model: provider()("fake-model"), prompt: "my name is Ana", maxRetries: 0 });
    const second = await generateText({
      model: provider()("fake-model"),
      // response.messages holds what the model said: the prompt is the caller's to keep.
      messages: [{ role: "user", content: "my name is Ana" }, ...first.response.messages, { role: "user", content: "what is my name?" }],
      maxRetries: 0,
      include,
    });
    const input = (second.steps[0]?.request.body as { input: { type?: string }[] }).input;
    expect(input.map((i) => i.type ?? "message")).toEqual(["message", "item_reference", "message"]);
    expect(second.text).toBe(replyTo("what is my name?"));
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: said("my name is Ana") },
      { role: "assistant", content: replyTo("my name is Ana") },
      { role: "user", content: said("what is my name?") },
    ]);
  });

  it("a tool loop with reasoning: the second step refers to the stored reasoning item, which resolves (and, as in every history, is not sent back)", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon], extra: { reasoning: ["Need", " weather."] } }));
    const result = await generateText({ model: provider()("fake-model"), prompt: "Lisbon?", tools, stopWhen: stepCountIs(5), maxRetries: 0, include });
    expect(result.text).toBe("Tool said: sunny in Lisbon");
    expectConformingBodies(result.steps);
    const input = (result.steps[1]?.request.body as { input: { type?: string }[] }).input;
    expect(input.map((i) => i.type ?? "message")).toEqual(["message", "item_reference", "function_call", "function_call_output"]);
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: said("Lisbon?") },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_lisbon", type: "function", function: { name: "get_weather", arguments: lisbon.arguments } }],
      },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" },
    ]);
  });

  it("streamText over a reasoning reply: the text arrives and the stream does not fail on the reasoning events", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Think", "ing."], text: "Answer." });
    const result = streamText({ model: provider()("fake-model"), prompt: "why?", includeRawChunks: true, maxRetries: 0 });
    const raw = await drain(result);
    expect(await result.text).toBe("Answer.");
    expect(raw.filter((e) => e.type === "response.reasoning_text.delta")).toHaveLength(2);
    // The SDK reads reasoning from an item's `summary` only; Parley's reasoning item carries its text as `content`.
    expect((await result.reasoning).map((r) => r.providerMetadata?.openai?.itemId)).toEqual([expect.stringMatching(/^rs_/)]);
  });
});

