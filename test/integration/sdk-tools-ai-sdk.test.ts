import { createOpenAI } from "@ai-sdk/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { toolLoop, type FakeToolCall } from "../support/fake-upstream.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * The AI SDK (ai + @ai-sdk/openai's chat model) with tools and a step limit, against both
 * chat-completions endpoints. It resends the whole history each step; the bound endpoint stores it once.
 */

const ctx = useServiceWithFakeUpstream();

const lisbon: FakeToolCall = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' };
const tools = {
  get_weather: tool({
    description: "The weather in a city.",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => `sunny in ${city}`,
  }),
};
const assistantCalling = (call: FakeToolCall) => ({
  role: "assistant",
  content: null,
  tool_calls: [{ id: call.id, type: "function", function: { name: call.name, arguments: call.arguments } }],
});
const toolResult = { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" };

async function boundModel() {
  const { body } = await ctx.api.post("/conversations", { model: "fake-model" });
  const provider = createOpenAI({ baseURL: `${ctx.service.url}/v1/conversations/${body.id}`, apiKey: TEST_API_KEY });
  return { id: body.id as string, model: provider.chat("fake-model") };
}

const storedMessages = async (conversationId: string) => (await ctx.api.get(`/conversations/${conversationId}/messages`)).body.data as any[];

describe("generateText with tools and a step limit", () => {
  it("completes the loop on the stateless endpoint", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const provider = createOpenAI({ baseURL: `${ctx.service.url}/v1`, apiKey: TEST_API_KEY });
    const result = await generateText({ model: provider.chat("fake-model"), prompt: "Lisbon?", tools, stopWhen: stepCountIs(5), maxRetries: 0 });
    expect(result.text).toBe("Tool said: sunny in Lisbon");
    expect(result.steps.map((s) => s.finishReason)).toEqual(["tool-calls", "stop"]);
    expect(result.steps[0]?.toolCalls).toEqual([expect.objectContaining({ toolCallId: "call_lisbon", toolName: "get_weather", input: { city: "Lisbon" } })]);
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([{ role: "user", content: "Lisbon?" }, assistantCalling(lisbon), toolResult]);
  });

  it("completes the loop on the bound endpoint, the history stored and sent upstream once", async () => {
    const { id, model } = await boundModel();
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const result = await generateText({ model, prompt: "Lisbon?", tools, stopWhen: stepCountIs(5), maxRetries: 0 });
    expect(result.text).toBe("Tool said: sunny in Lisbon");
    expect(ctx.upstream.requests.map((r) => r.body.messages)).toEqual([
      [{ role: "user", content: "Lisbon?" }],
      [{ role: "user", content: "Lisbon?" }, assistantCalling(lisbon), toolResult],
    ]);
    const stored = await storedMessages(id);
    expect(stored.map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
    expect(stored[1]?.tool_calls).toEqual(assistantCalling(lisbon).tool_calls);
    expect(stored[3]?.content).toBe("Tool said: sunny in Lisbon");
  });

  it("stops at the step limit with the tool call stored and no answer asked for", async () => {
    const { id, model } = await boundModel();
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const result = await generateText({ model, prompt: "Lisbon?", tools, stopWhen: stepCountIs(1), maxRetries: 0 });
    expect(result.steps).toHaveLength(1);
    expect(result.finishReason).toBe("tool-calls");
    expect(ctx.upstream.requests).toHaveLength(1);
    expect((await storedMessages(id)).map((m) => m.role)).toEqual(["user", "assistant"]);
  });
});

describe("streamText with tools", () => {
  it("streams the tool call and then the answer on the bound endpoint, stored once", async () => {
    const { id, model } = await boundModel();
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const result = streamText({ model, prompt: "Lisbon?", tools, stopWhen: stepCountIs(5), maxRetries: 0 });
    const parts: { type: string; [k: string]: unknown }[] = [];
    for await (const part of result.fullStream) parts.push(part);
    expect(parts.filter((p) => p.type === "error")).toEqual([]);
    expect(parts.find((p) => p.type === "tool-call")).toMatchObject({ toolCallId: "call_lisbon", toolName: "get_weather", input: { city: "Lisbon" } });
    expect(parts.find((p) => p.type === "tool-result")).toMatchObject({ toolCallId: "call_lisbon", output: "sunny in Lisbon" });
    expect(await result.text).toBe("Tool said: sunny in Lisbon");
    expect(ctx.upstream.requests.map((r) => r.body.stream)).toEqual([true, true]);
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([{ role: "user", content: "Lisbon?" }, assistantCalling(lisbon), toolResult]);
    expect((await storedMessages(id)).map((m) => m.role)).toEqual(["user", "assistant", "tool", "assistant"]);
  });
});
