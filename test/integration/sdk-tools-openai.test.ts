import OpenAI from "openai";
import Together from "together-ai";
import { describe, expect, it } from "vitest";
import { toolLoop, upstreamError, type FakeToolCall, type FakeToolCallStyle } from "../support/fake-upstream.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * Tools through Parley with the openai and together-ai SDKs, unchanged but for the base URL: the
 * openai tool runner drives a whole loop against the conversation-bound endpoint (which stores the
 * history once, though the runner resends all of it each step), and tool calls streamed the way
 * OpenAI, vLLM and Together stream them reach the SDK whole.
 */

const ctx = useServiceWithFakeUpstream();

const weatherParameters = { type: "object", properties: { city: { type: "string" } }, required: ["city"] };
const weatherTool = { type: "function" as const, function: { name: "get_weather", description: "The weather in a city.", parameters: weatherParameters } };
const lisbon: FakeToolCall = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' };
const porto: FakeToolCall = { id: "call_porto", name: "get_weather", arguments: '{"city":"Porto"}' };
const runnableWeather = {
  type: "function" as const,
  function: {
    ...weatherTool.function,
    parse: (input: string) => JSON.parse(input) as { city: string },
    function: ({ city }: { city: string }) => `sunny in ${city}`,
  },
};
const assistantCalling = (...calls: FakeToolCall[]) => ({
  role: "assistant",
  content: null,
  tool_calls: calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
});

/** The bound client, and the request bodies it sent Parley (raw text). */
async function createConversation(system?: string): Promise<{ id: string; client: OpenAI; sent: string[] }> {
  const { status, body } = await ctx.api.post("/conversations", { model: "fake-model", ...(system ? { system } : {}) });
  expect(status).toBe(201);
  const sent: string[] = [];
  const fetchRecording: typeof fetch = (input, init) => {
    if (typeof init?.body === "string") sent.push(init.body);
    return fetch(input, init);
  };
  return {
    id: body.id,
    client: openaiAt(`${ctx.service.url}/v1/conversations/${body.id}`, { fetch: fetchRecording }),
    sent,
  };
}

const storedMessages = async (conversationId: string) => (await ctx.api.get(`/conversations/${conversationId}/messages`)).body.data as any[];

describe("the openai tool runner against the conversation-bound endpoint", () => {
  it("runs a one-call loop to its answer, storing user, assistant(tool_calls), tool and assistant once each", async () => {
    const { id, client, sent } = await createConversation("You are a weather bot.");
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));

    const runner = client.chat.completions.runTools({
      model: "fake-model",
      messages: [{ role: "user", content: "Weather in Lisbon?" }],
      tools: [runnableWeather],
    });
    expect(await runner.finalContent()).toBe("Tool said: sunny in Lisbon");

    const system = { role: "system", content: "You are a weather bot." };
    const user = { role: "user", content: "Weather in Lisbon?" };
    const tool = { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" };
    expect(ctx.upstream.requests.map((r) => r.body.messages)).toEqual([[system, user], [system, user, assistantCalling(lisbon), tool]]);
    // tools reach the upstream as the runner sent them, key order included (JSON.parse keeps the order it reads).
    expect(sent).toHaveLength(2);
    for (const [i, r] of ctx.upstream.requests.entries()) expect(r.raw).toContain(`"tools":${JSON.stringify(JSON.parse(sent[i]!).tools)}`);

    const stored = await storedMessages(id);
    expect(stored.map((m) => [m.role, m.status])).toEqual([
      ["user", "completed"],
      ["assistant", "completed"],
      ["tool", "completed"],
      ["assistant", "completed"],
    ]);
    // The resource's content is text: "" on a reply that only called tools (sent upstream as content null, above).
    expect(stored[1]).toMatchObject({ content: "", content_parts: null, finish_reason: "tool_calls", tool_calls: assistantCalling(lisbon).tool_calls });
    expect(stored[2]).toMatchObject({ content: "sunny in Lisbon", tool_call_id: "call_lisbon" });
    expect(stored[3]).toMatchObject({ content: "Tool said: sunny in Lisbon", finish_reason: "stop" });
  });

  it("runs a streamed loop with two parallel calls; the next turn sends the stored history once", async () => {
    const { id, client } = await createConversation();
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon, porto] }));

    const runner = client.chat.completions.runTools({
      model: "fake-model",
      stream: true,
      messages: [{ role: "user", content: "Lisbon and Porto?" }],
      tools: [runnableWeather],
    });
    expect(await runner.finalContent()).toBe("Tool said: sunny in Lisbon | sunny in Porto");

    const user = { role: "user", content: "Lisbon and Porto?" };
    const tools = [
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" },
      { role: "tool", tool_call_id: "call_porto", content: "sunny in Porto" },
    ];
    expect(ctx.upstream.requests.map((r) => r.body.stream)).toEqual([true, true]);
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([user, assistantCalling(lisbon, porto), ...tools]);

    const stored = await storedMessages(id);
    expect(stored.map((m) => m.role)).toEqual(["user", "assistant", "tool", "tool", "assistant"]);
    expect(stored[1]?.tool_calls).toEqual(assistantCalling(lisbon, porto).tool_calls);

    // A plain next turn: the upstream gets the stored loop once, in order, then the new question.
    ctx.upstream.setBehaviour({ kind: "ok" });
    const next = await client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Thanks" }] });
    expect(next.choices[0]?.message.content).toBe("Reply to: Thanks");
    expect(ctx.upstream.requests[2]?.body.messages).toEqual([
      user,
      assistantCalling(lisbon, porto),
      ...tools,
      { role: "assistant", content: "Tool said: sunny in Lisbon | sunny in Porto" },
      { role: "user", content: "Thanks" },
    ]);
    expect(await storedMessages(id)).toHaveLength(7);
  });

  it("runs a thinking model's streamed loop: reasoning stored on the replies, not sent back, history once", async () => {
    const { id, client } = await createConversation();
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon], extra: { reasoning: ["I should", " check."], reasoningField: "reasoning" } }));

    const runner = client.chat.completions.runTools({
      model: "fake-model",
      stream: true,
      messages: [{ role: "user", content: "Lisbon?" }],
      tools: [runnableWeather],
    });
    expect(await runner.finalContent()).toBe("Tool said: sunny in Lisbon");

    expect(ctx.upstream.requests[1]?.body.messages).toEqual([
      { role: "user", content: "Lisbon?" },
      assistantCalling(lisbon),
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" },
    ]);
    const stored = await storedMessages(id);
    expect(stored.map((m) => [m.role, m.reasoning])).toEqual([
      ["user", null],
      ["assistant", "I should check."],
      ["tool", null],
      ["assistant", "I should check."],
    ]);
  });

  it("refuses a tool message whose tool_call_id answers no stored call, naming the field", async () => {
    const { client } = await createConversation();
    const refused = client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "tool", tool_call_id: "call_nobody_made", content: "42" }],
    });
    await expect(refused).rejects.toMatchObject({ status: 400, param: expect.stringContaining("tool_call_id") });
    expect(ctx.upstream.requests).toHaveLength(0);
  });
});

describe("tool calls relayed to the openai SDK on the stateless endpoint", () => {
  const openai = () => openaiAt(`${ctx.service.url}/v1`);

  for (const style of ["openai", "vllm", "together", "whole"] satisfies FakeToolCallStyle[]) {
    it(`streams two parallel calls sent ${style}-style as OpenAI does: index, id, type and name first, then argument fragments`, async () => {
      ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon, porto], toolCallStyle: style });
      const stream = await openai().chat.completions.create({
        model: "fake-model",
        messages: [{ role: "user", content: "Lisbon and Porto?" }],
        tools: [weatherTool],
        tool_choice: "auto",
        parallel_tool_calls: true,
        stream: true,
      });
      const fragments: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
      const finishReasons: (string | null)[] = [];
      for await (const chunk of stream) {
        for (const choice of chunk.choices) {
          fragments.push(...(choice.delta.tool_calls ?? []));
          finishReasons.push(choice.finish_reason);
        }
      }
      for (const [index, call] of [lisbon, porto].entries()) {
        const own = fragments.filter((f) => f.index === index);
        expect(own[0]).toMatchObject({ index, id: call.id, type: "function", function: { name: call.name } });
        expect(own.map((f) => f.function?.arguments ?? "").join("")).toBe(call.arguments);
        expect(own.slice(1).every((f) => f.function?.name === undefined)).toBe(true);
      }
      expect(finishReasons.filter((r) => r !== null)).toEqual(["tool_calls"]);
      expect(ctx.upstream.requests[0]?.body).toMatchObject({ tools: [weatherTool], tool_choice: "auto", parallel_tool_calls: true });
    });
  }

  it("answers non-streamed with message.tool_calls and content null; the tool result turn gets the answer", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const first = await openai().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Lisbon?" }],
      tools: [weatherTool],
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    expect(first.choices[0]?.finish_reason).toBe("tool_calls");
    expect(first.choices[0]?.message).toMatchObject(assistantCalling(lisbon));
    expect(ctx.upstream.requests[0]?.body.tool_choice).toEqual({ type: "function", function: { name: "get_weather" } });

    const second = await openai().chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "user", content: "Lisbon?" },
        first.choices[0]!.message as OpenAI.ChatCompletionAssistantMessageParam,
        { role: "tool", tool_call_id: "call_lisbon", content: "sunny" },
      ],
      tools: [weatherTool],
    });
    expect(second.choices[0]?.message.content).toBe("Tool said: sunny");
    expect(ctx.upstream.requests[1]?.body.messages.slice(1)).toEqual([
      expect.objectContaining(assistantCalling(lisbon)),
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny" },
    ]);
  });
});

describe("together-ai with tools on the stateless endpoint", () => {
  const together = () => new Together({ baseURL: `${ctx.service.url}/v1`, apiKey: TEST_API_KEY, maxRetries: 0 });

  it("gets the tool call, non-streamed and streamed (Together-style fragments), and the answer to its result", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon], style: "together" }));
    const first = await together().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Lisbon?" }],
      tools: [weatherTool],
    });
    expect(first.choices[0]?.finish_reason).toBe("tool_calls");
    expect(first.choices[0]?.message?.tool_calls).toEqual([expect.objectContaining(assistantCalling(lisbon).tool_calls[0])]);

    const stream = await together().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Lisbon?" }],
      tools: [weatherTool],
      stream: true,
    });
    let args = "";
    let name: string | undefined;
    for await (const chunk of stream) {
      for (const f of chunk.choices[0]?.delta?.tool_calls ?? []) {
        name ??= f.function?.name;
        args += f.function?.arguments ?? "";
      }
    }
    expect([name, args]).toEqual(["get_weather", lisbon.arguments]);

    const answer = await together().chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "user", content: "Lisbon?" },
        { role: "assistant", content: null, tool_calls: assistantCalling(lisbon).tool_calls } as never,
        { role: "tool", tool_call_id: "call_lisbon", content: "sunny" } as never,
      ],
      tools: [weatherTool],
    });
    expect(answer.choices[0]?.message?.content).toBe("Tool said: sunny");
  });
});

describe("an upstream's 400 keeps its meaning", () => {
  const refusal = upstreamError(400, {
    message: "Invalid schema for function 'get_weather'",
    type: "invalid_request_error",
    code: "invalid_function_parameters",
    param: "tools[0].function.parameters",
  });

  it("reaches the openai SDK (default retries) as a BadRequestError with the upstream's type, code and param, called once", async () => {
    ctx.upstream.setBehaviour(refusal);
    const client = openaiAt(`${ctx.service.url}/v1`, { maxRetries: 2 });
    const call = client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "x" }], tools: [weatherTool] });
    await expect(call).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(call).rejects.toMatchObject({ status: 400, type: "invalid_request_error", code: "invalid_function_parameters", param: "tools[0].function.parameters" });
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("on the bound endpoint: not retried, and the refused turn does not stay in the history sent later", async () => {
    const { client: bound, id } = await createConversation();
    ctx.upstream.setBehaviour(refusal);
    const retrying = openaiAt(`${ctx.service.url}/v1/conversations/${id}`, { maxRetries: 2 });
    await expect(
      retrying.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "refused" }], tools: [weatherTool] }),
    ).rejects.toMatchObject({ status: 400, code: "invalid_function_parameters" });
    expect(ctx.upstream.requests).toHaveLength(1);

    ctx.upstream.setBehaviour({ kind: "ok" });
    await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "again" }] });
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([{ role: "user", content: "again" }]);
  });
});
