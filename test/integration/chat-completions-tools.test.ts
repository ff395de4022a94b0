import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { toolCallFragments, toolLoop, type FakeToolCall, type FakeToolCallStyle } from "../support/fake-upstream.ts";
import { boundOpenAI, openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * The chat-completions dialect past plain chat, with the real openai SDK against Parley (stateless and
 * conversation-bound): tools reach the upstream as sent, streamed tool calls reach the SDK exactly as the
 * upstream streamed them, reasoning arrives as `reasoning_content`, several choices on the stateless
 * endpoint, images and the developer role passed on as given.
 */

const ctx = useServiceWithFakeUpstream({ overrides: { MAX_IMAGE_BYTES_PER_MESSAGE: 1024 } });

const openai = () => openaiAt(`${ctx.service.url}/v1`);

const weather = {
  type: "function" as const,
  function: {
    name: "get_weather",
    description: "The weather in a city.",
    // Properties out of alphabetical order, `required` before them: kept as written.
    parameters: { type: "object", required: ["city"], properties: { unit: { type: "string" }, city: { type: "string" } } },
  },
};
const lisbon: Required<FakeToolCall> = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon","unit":"C"}' };
const porto: Required<FakeToolCall> = { id: "call_porto", name: "get_weather", arguments: '{"city":"Porto"}' };
const wholeCalls = (...calls: Required<FakeToolCall>[]) =>
  calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));

/** Each chunk's first choice's delta.tool_calls entries, in order, and the finish reasons seen. */
async function streamedToolCalls(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const fragments: unknown[] = [];
  const finishes: string[] = [];
  let reasoning = "";
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      fragments.push(...(choice.delta.tool_calls ?? []));
      reasoning += (choice.delta as { reasoning_content?: string }).reasoning_content ?? "";
      if (choice.finish_reason) finishes.push(choice.finish_reason);
    }
  }
  return { fragments, finishes, reasoning };
}

describe("stateless: tools", () => {
  it("passes tools, tool_choice, parallel_tool_calls and a json schema on in the client's key order", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon] });
    const body = {
      model: "fake-model",
      messages: [{ role: "user", content: "Weather in Lisbon?" }],
      tools: [weather],
      temperature: 0.2,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      parallel_tool_calls: false,
      response_format: { type: "json_schema", json_schema: { name: "r", schema: { properties: { reasoning: {}, answer: {} } } } },
    };
    const res = await ctx.api.post("/chat/completions", body);
    expect(res.status).toBe(200);
    const sent = ctx.upstream.requests[0]!;
    expect(Object.keys(JSON.parse(sent.raw))).toEqual([
      "model",
      "messages",
      "tools",
      "temperature",
      "tool_choice",
      "parallel_tool_calls",
      "response_format",
      "stream",
    ]);
    expect(sent.raw).toContain(JSON.stringify(body.tools));
    expect(sent.raw).toContain(JSON.stringify(body.response_format));
  });

  for (const style of ["openai", "vllm", "together", "whole"] as FakeToolCallStyle[]) {
    it(`streams tool calls to the SDK exactly as the upstream streamed them (${style})`, async () => {
      ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon, porto], toolCallStyle: style, argumentFragmentChars: 5 });
      const stream = await openai().chat.completions.create({
        model: "fake-model",
        messages: [{ role: "user", content: "Weather in Lisbon and Porto?" }],
        tools: [weather],
        stream: true,
      });
      const { fragments, finishes } = await streamedToolCalls(stream);
      expect(fragments).toEqual(toolCallFragments([lisbon, porto], style, 5));
      expect(finishes).toEqual(["tool_calls"]);
    });
  }

  it("the SDK's stream helper puts the calls together; non-streamed, the message has tool_calls and content null", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon, porto], argumentFragmentChars: 3 });
    const runner = openai().chat.completions.stream({
      model: "fake-model",
      messages: [{ role: "user", content: "Weather?" }],
      tools: [weather],
    });
    const streamed = await runner.finalChatCompletion();
    expect(streamed.choices[0]?.message.tool_calls).toEqual(wholeCalls(lisbon, porto));
    expect(streamed.choices[0]?.finish_reason).toBe("tool_calls");

    const whole = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Weather?" }], tools: [weather] });
    expect(whole.choices[0]?.message.content).toBeNull();
    expect(whole.choices[0]?.message.tool_calls).toEqual(wholeCalls(lisbon, porto));
    expect(whole.choices[0]?.finish_reason).toBe("tool_calls");
  });

  it("takes the tool results back: an assistant message with content null and tool_calls, then tool messages", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "user", content: "Weather?" },
      { role: "assistant", content: null, tool_calls: wholeCalls(lisbon, porto) as OpenAI.ChatCompletionMessageToolCall[] },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny" },
      { role: "tool", tool_call_id: "call_porto", content: "rain" },
    ];
    const completion = await openai().chat.completions.create({ model: "fake-model", messages, tools: [weather] });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(ctx.upstream.requests[0]?.body.messages).toEqual(messages);
  });
});

describe("stateless: the openai tool runner", () => {
  it("runTools drives a whole loop: the call streamed back, the tool run, its result sent, the answer", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const runner = openai().chat.completions.runTools({
      model: "fake-model",
      messages: [{ role: "user", content: "Weather in Lisbon?" }],
      stream: true,
      tools: [
        {
          type: "function",
          function: {
            ...weather.function,
            parse: (input: string) => JSON.parse(input) as { city: string },
            function: ({ city }: { city: string }) => `sunny in ${city}`,
          },
        },
      ],
    });
    expect(await runner.finalContent()).toBe("Tool said: sunny in Lisbon");
    expect(ctx.upstream.requests).toHaveLength(2);
    expect(ctx.upstream.requests[1]?.body.messages.slice(1)).toEqual([
      { role: "assistant", content: null, tool_calls: wholeCalls(lisbon) },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny in Lisbon" },
    ]);
  });
});

describe("stateless: reasoning, logprobs, several choices", () => {
  it("relays reasoning as delta.reasoning_content (from reasoning_content or reasoning), and as message.reasoning_content", async () => {
    for (const reasoningField of ["reasoning_content", "reasoning"] as const) {
      ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Let me ", "think."], reasoningField });
      const stream = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "hi" }], stream: true });
      let content = "";
      let reasoning = "";
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? "";
        reasoning += (chunk.choices[0]?.delta as { reasoning_content?: string } | undefined)?.reasoning_content ?? "";
      }
      expect(reasoning).toBe("Let me think.");
      expect(content).toBe("Reply to: hi");
      const whole = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "hi" }] });
      expect(whole.choices[0]?.message).toMatchObject({ content: "Reply to: hi", reasoning_content: "Let me think." });
    }
  });

  it("sends an earlier reply's reasoning_content back only with send_reasoning: true, which itself stays in Parley", async () => {
    const messages = [
      { role: "user", content: "hi" },
      { role: "assistant", content: "hello", reasoning_content: "They greeted me." },
      { role: "user", content: "again" },
    ];
    expect((await ctx.api.post("/chat/completions", { model: "fake-model", messages })).status).toBe(200);
    expect((await ctx.api.post("/chat/completions", { model: "fake-model", messages, send_reasoning: true })).status).toBe(200);
    expect(ctx.upstream.requests[0]?.body.messages[1]).toEqual({ role: "assistant", content: "hello" });
    expect(ctx.upstream.requests[1]?.body.messages[1]).toEqual({ role: "assistant", content: "hello", reasoning_content: "They greeted me." });
    expect(ctx.upstream.requests.map((r) => "send_reasoning" in r.body)).toEqual([false, false]);
  });

  it("relays logprobs on each chunk and on the whole choice", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", logprobs: true });
    const params = { model: "fake-model", messages: [{ role: "user" as const, content: "hi there" }], logprobs: true, top_logprobs: 2 };
    const stream = await openai().chat.completions.create({ ...params, stream: true });
    const tokens: string[] = [];
    for await (const chunk of stream) for (const lp of chunk.choices[0]?.logprobs?.content ?? []) tokens.push(lp.token);
    expect(tokens.join("")).toBe("Reply to: hi there");
    const whole = await openai().chat.completions.create(params);
    expect(whole.choices[0]?.logprobs?.content?.map((l) => l.token).join("")).toBe("Reply to: hi there");
    expect(whole.choices[0]?.logprobs?.content?.[0]?.top_logprobs).toHaveLength(2);
    expect(ctx.upstream.requests.map((r) => [r.body.logprobs, r.body.top_logprobs])).toEqual([[true, 2], [true, 2]]);
  });

  it("n = 2 passes through: every choice relayed, streamed and not", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", honourN: true });
    const messages = [{ role: "user" as const, content: "two ways" }];
    const whole = await openai().chat.completions.create({ model: "fake-model", messages, n: 2 });
    expect(whole.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, "Reply to: two ways", "stop"],
      [1, "Reply to: two ways (choice 1)", "stop"],
    ]);
    const stream = await openai().chat.completions.create({ model: "fake-model", messages, n: 2, stream: true });
    const texts = ["", ""];
    const finishes: [number, string][] = [];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? "";
        if (c.finish_reason) finishes.push([c.index, c.finish_reason]);
      }
    }
    expect(texts).toEqual(["Reply to: two ways", "Reply to: two ways (choice 1)"]);
    expect(finishes).toEqual([
      [0, "stop"],
      [1, "stop"],
    ]);
    expect(ctx.upstream.requests.map((r) => r.body.n)).toEqual([2, 2]);
  });
});

describe("stateless: messages as given", () => {
  it("keeps the developer role, names, and image parts (https and data URLs)", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "developer", content: "Describe images." },
      {
        role: "user",
        name: "ann",
        content: [
          { type: "text", text: "What are these?" },
          { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
        ],
      },
    ];
    const completion = await openai().chat.completions.create({ model: "fake-model", messages });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect(ctx.upstream.requests[0]?.body.messages).toEqual(messages);
  });

  it("answers images over MAX_IMAGE_BYTES_PER_MESSAGE with a 413 naming the content", async () => {
    const big = `data:image/png;base64,${Buffer.alloc(2048).toString("base64")}`;
    const res = await ctx.api.post("/chat/completions", {
      model: "fake-model",
      messages: [{ role: "user", content: [{ type: "text", text: "this?" }, { type: "image_url", image_url: { url: big } }] }],
    });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ code: "image_too_large", param: "messages.0.content" });
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("refuses a part of an unknown type, naming the field", async () => {
    const res = await ctx.api.post("/chat/completions", {
      model: "fake-model",
      messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }],
    });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toMatch(/^messages\.0\.content/);
    expect(ctx.upstream.requests).toHaveLength(0);
  });
});

describe("conversation-bound", () => {
  it("refuses n > 1 with a 400 naming n: a conversation stores one reply", async () => {
    const { client } = await boundOpenAI(ctx);
    const twoChoices = client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "x" }], n: 2 });
    await expect(twoChoices).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    await expect(twoChoices).rejects.toMatchObject({ status: 400, param: "n" });
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("streams tool calls as the upstream did, then answers a turn whose last message is a tool result", async () => {
    const { client } = await boundOpenAI(ctx);
    ctx.upstream.setBehaviour({
      kind: "script",
      pick: ({ body }) => (body.messages.at(-1)?.role === "tool" ? { kind: "ok", text: "Sunny in Lisbon." } : { kind: "ok", toolCalls: [lisbon], argumentFragmentChars: 4 }),
    });
    const stream = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Weather in Lisbon?" }],
      tools: [weather],
      stream: true,
    });
    const { fragments, finishes } = await streamedToolCalls(stream);
    expect(fragments).toEqual(toolCallFragments([lisbon], "openai", 4));
    expect(finishes).toEqual(["tool_calls"]);

    const answer = await client.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "tool", tool_call_id: "call_lisbon", content: "sunny" }],
      tools: [weather],
    });
    expect(answer.choices[0]?.message.content).toBe("Sunny in Lisbon.");
    // The stored history went upstream: the call, then its result.
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([
      { role: "user", content: "Weather in Lisbon?" },
      { role: "assistant", content: null, tool_calls: wholeCalls(lisbon) },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny" },
    ]);
  });

  it("answers non-streamed with message.tool_calls and content null", async () => {
    const { client } = await boundOpenAI(ctx);
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon, porto] });
    const whole = await client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Weather?" }], tools: [weather] });
    expect(whole.choices[0]?.message.content).toBeNull();
    expect(whole.choices[0]?.message.tool_calls).toEqual(wholeCalls(lisbon, porto));
    expect(whole.choices[0]?.finish_reason).toBe("tool_calls");
  });

  it("relays reasoning as delta.reasoning_content, and keeps the developer role and image parts", async () => {
    const { client } = await boundOpenAI(ctx);
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Hm, ", "a cat."] });
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "developer", content: "Be brief." },
      { role: "user", content: [{ type: "text", text: "What is it?" }, { type: "image_url", image_url: { url: "https://example.com/cat.png" } }] },
    ];
    const stream = await client.chat.completions.create({ model: "fake-model", messages, stream: true });
    const { reasoning } = await streamedToolCalls(stream);
    expect(reasoning).toBe("Hm, a cat.");
    expect(ctx.upstream.requests[0]?.body.messages).toEqual(messages);
  });
});
