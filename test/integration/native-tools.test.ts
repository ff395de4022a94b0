import { describe, expect, it } from "vitest";
import { toolLoop } from "../support/fake-upstream.ts";
import { postForEvents } from "../support/http.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/** The native API with the whole message model: tools, tool results, reasoning, images, names, developer, params kept. */

const IMAGE_LIMIT = 3_000;
const ctx = useServiceWithFakeUpstream({
  models: ["fake-model", "fake-small"],
  overrides: {
    MAX_IMAGE_BYTES_PER_MESSAGE: IMAGE_LIMIT,
    MODEL_CONTEXT_WINDOWS: [{ models: ["fake-small"], context_tokens: 400, reply_reserve_tokens: 100, token_ratio: 1 }],
  },
});

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};
const calls = [
  { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' },
  { id: "call_porto", name: "get_weather", arguments: '{"city":"Porto"}' },
];

async function newConversation(body: Record<string, unknown> = {}) {
  const res = await ctx.api.post("/conversations", { model: "fake-model", ...body });
  expect(res.status).toBe(201);
  return res.body.id as string;
}

const lastRequest = () => ctx.upstream.requests.at(-1)!;

describe("tool calls on the native API", () => {
  it("stores a reply that only called tools as completed with its tool calls, and streams their deltas", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: calls, argumentFragmentChars: 4 });
    const conv = await newConversation({ params: { tools: [weatherTool], tool_choice: "auto" } });
    const res = await postForEvents(`${ctx.service.url}/v1/conversations/${conv}/messages`, { content: "Weather in Lisbon and Porto?", stream: true });
    expect(res.status).toBe(200);

    // The deltas carry the calls as OpenAI streams them: put back together, they are the calls.
    const fragments = res.events
      .filter((e) => e.event === "message.delta")
      .flatMap((e) => (JSON.parse(e.data).delta.tool_calls ?? []) as { index: number; id?: string; function?: { name?: string; arguments?: string } }[]);
    expect(fragments.length).toBeGreaterThan(2);
    const rebuilt = new Map<number, { id: string; name: string; arguments: string }>();
    for (const f of fragments) {
      const c = rebuilt.get(f.index) ?? { id: "", name: "", arguments: "" };
      c.id ||= f.id ?? "";
      c.name += f.function?.name ?? "";
      c.arguments += f.function?.arguments ?? "";
      rebuilt.set(f.index, c);
    }
    expect([...rebuilt.values()]).toEqual(calls);

    const completed = JSON.parse(res.events.find((e) => e.event === "message.completed")!.data);
    const expectedCalls = calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } }));
    expect(completed).toMatchObject({ status: "completed", finish_reason: "tool_calls", content: "", tool_calls: expectedCalls });

    const got = await ctx.api.get(`/conversations/${conv}/messages/${completed.id}`);
    expect(got.body.tool_calls).toEqual(expectedCalls);
    const [row] = await ctx.service.sql<{ tool_calls: unknown; content: string }[]>`select tool_calls, content from messages where id = ${completed.id}`;
    expect(row).toEqual({ tool_calls: expectedCalls, content: "" });
    // The tools reached the upstream as given.
    expect(lastRequest().body.tools).toEqual([weatherTool]);
  });

  it("answers a tool result with a reply, sending the call (content null) and the results in order", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls }));
    const conv = await newConversation({ params: { tools: [weatherTool] } });
    const first = await ctx.api.post(`/conversations/${conv}/messages`, { content: "Weather?" });
    expect(first.status).toBe(201);
    expect(first.body.reply.finish_reason).toBe("tool_calls");
    const toolCalls = first.body.reply.tool_calls as { id: string }[];
    expect(toolCalls.map((c) => c.id)).toEqual(["call_lisbon", "call_porto"]);

    // The first result asks for no reply yet; the second gets one by default.
    const r1 = await ctx.api.post(`/conversations/${conv}/messages`, { role: "tool", tool_call_id: "call_lisbon", content: "sunny", reply: false });
    expect(r1.status).toBe(201);
    expect(r1.body.reply).toBeNull();
    const r2 = await ctx.api.post(`/conversations/${conv}/messages`, { role: "tool", tool_call_id: "call_porto", content: [{ type: "text", text: "rain" }] });
    expect(r2.status).toBe(201);
    expect(r2.body.message).toMatchObject({ role: "tool", tool_call_id: "call_porto", content: "rain", content_parts: [{ type: "text", text: "rain" }] });
    expect(r2.body.reply).toMatchObject({ status: "completed", content: 'Tool said: sunny | [{"type":"text","text":"rain"}]' });

    const sent = lastRequest().body.messages;
    expect(sent).toEqual([
      { role: "user", content: "Weather?" },
      {
        role: "assistant",
        content: null,
        tool_calls: calls.map((c) => ({ id: c.id, type: "function", function: { name: c.name, arguments: c.arguments } })),
      },
      { role: "tool", content: "sunny", tool_call_id: "call_lisbon" },
      { role: "tool", content: [{ type: "text", text: "rain" }], tool_call_id: "call_porto" },
    ]);
  });

  it("refuses a tool result that answers no call, naming tool_call_id, and stores nothing", async () => {
    const conv = await newConversation();
    await ctx.api.post(`/conversations/${conv}/messages`, { content: "hi" });
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { role: "tool", tool_call_id: "call_nobody_made", content: "42" });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe("tool_call_id");
    expect((await ctx.api.get(`/conversations/${conv}/messages`)).body.data).toHaveLength(2);
  });

  it("refuses a tool result answering a call made before the newest user message (only the exchange in progress is looked at)", async () => {
    const call = { id: "call_earlier", type: "function", function: { name: "get_weather", arguments: "{}" } };
    const conv = await newConversation({
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: null, tool_calls: [call] },
        { role: "tool", tool_call_id: "call_earlier", content: "sunny" },
        { role: "assistant", content: "Sunny." },
        { role: "user", content: "Thanks" },
      ],
    });
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { role: "tool", tool_call_id: "call_earlier", content: "sunny again" });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe("tool_call_id");
    expect((await ctx.api.get(`/conversations/${conv}/messages`)).body.data).toHaveLength(5);
  });

  it("refuses malformed messages naming the field", async () => {
    const conv = await newConversation();
    const cases: [Record<string, unknown>, string][] = [
      [{ role: "tool", content: "x" }, "tool_call_id"],
      [{ role: "user", content: null }, "content"],
      [{ role: "assistant", content: null }, "content"],
      [{ role: "user", content: [{ type: "audio", input_audio: {} }] }, "content.0.type"],
      [{ role: "user", content: [{ type: "image_url", image_url: { url: "http://example.com/a.png" } }] }, "content.0.image_url.url"],
      [{ role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f" } }] }, "tool_calls.0.function.arguments"],
      [{ role: "user", content: "x", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{}" } }] }, "tool_calls"],
      [{ content: "x", params: { n: 2 } }, "params.n"],
    ];
    for (const [body, param] of cases) {
      const res = await ctx.api.post(`/conversations/${conv}/messages`, body);
      expect([res.status, res.body.error?.param], JSON.stringify(body)).toEqual([400, param]);
    }
    expect((await ctx.api.get(`/conversations/${conv}/messages`)).body.data).toHaveLength(0);
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("stores an imported assistant turn with tool calls and content null", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", text: "done" });
    const conv = await newConversation({
      messages: [
        { role: "user", content: "Weather?" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{}" } }] },
      ],
    });
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { role: "tool", tool_call_id: "call_1", content: "sunny" });
    expect(res.status).toBe(201);
    expect(lastRequest().body.messages[1]).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: "{}" } }],
    });
  });
});

describe("tool exchanges and the context window", () => {
  it("leaves out a tool result whose call fell outside the window, which upstreams would refuse", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", text: "ok" });
    const conv = await newConversation({
      model: "fake-small",
      messages: [
        { role: "user", content: "start" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_big", type: "function", function: { name: "f", arguments: " a".repeat(600) } }] },
        { role: "tool", tool_call_id: "call_big", content: "result" },
      ],
    });
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { content: "next" });
    expect(res.status).toBe(201);
    expect(lastRequest().body.messages).toEqual([{ role: "user", content: "next" }]);
    expect(res.body.reply.context.messages).toBe(1);
  });

  it("refuses a tool result answering a call of a reply that failed", async () => {
    ctx.upstream.setBehaviour({ kind: "drop", afterTokens: 0 });
    const conv = await newConversation();
    const failed = await ctx.api.post(`/conversations/${conv}/messages`, { content: "call something" });
    expect(failed.body.reply.status).toBe("failed");
    await ctx.service.sql`update messages set tool_calls = ${ctx.service.sql.json([{ id: "call_failed", type: "function", function: { name: "f", arguments: "{}" } }])} where id = ${failed.body.reply.id}`;
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { role: "tool", tool_call_id: "call_failed", content: "x" });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe("tool_call_id");
  });
});

describe("lossless messages", () => {
  it("keeps the key order of a json_schema in params on its way upstream", async () => {
    const schema = { name: "answer", strict: true, schema: { type: "object", properties: { reasoning: { type: "string" }, answer: { type: "string" } }, required: ["reasoning", "answer"], additionalProperties: false } };
    const conv = await newConversation({ params: { response_format: { type: "json_schema", json_schema: schema }, zeta: 1, alpha: 2 } });
    await ctx.api.post(`/conversations/${conv}/messages`, { content: "q", params: { top_p: 0.5, frequency_penalty: 0 } });
    const raw = lastRequest().raw;
    // Compared as text: parsing and comparing objects would hide the order.
    expect(raw).toContain(JSON.stringify({ type: "json_schema", json_schema: schema }));
    expect(raw.indexOf('"zeta"')).toBeLessThan(raw.indexOf('"alpha"'));
    expect(raw.indexOf('"top_p"')).toBeLessThan(raw.indexOf('"frequency_penalty"'));
    const conversation = await ctx.api.get(`/conversations/${conv}`);
    expect(Object.keys(conversation.body.params)).toEqual(["response_format", "zeta", "alpha"]);
    expect(Object.keys(conversation.body.params.response_format.json_schema.schema.properties)).toEqual(["reasoning", "answer"]);
  });

  it("keeps name and the developer role, stored and sent", async () => {
    const conv = await newConversation();
    const dev = await ctx.api.post(`/conversations/${conv}/messages`, { role: "developer", content: "Answer in Portuguese." });
    expect(dev.status).toBe(201);
    expect(dev.body.message).toMatchObject({ role: "developer", content: "Answer in Portuguese." });
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { content: "hello", name: "ana" });
    expect(res.body.message).toMatchObject({ name: "ana" });
    expect(lastRequest().body.messages).toEqual([
      { role: "developer", content: "Answer in Portuguese." },
      { role: "user", content: "hello", name: "ana" },
    ]);
  });

  it("stores image parts and sends them upstream as given; text-only history stays plain strings", async () => {
    const conv = await newConversation();
    await ctx.api.post(`/conversations/${conv}/messages`, { content: "plain first" });
    const parts = [
      { type: "text", text: "What is in these?" },
      { type: "image_url", image_url: { url: "https://example.com/cat.png", detail: "low" } },
      { type: "image_url", image_url: { url: `data:image/png;base64,${Buffer.alloc(600).toString("base64")}` } },
    ];
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { content: parts });
    expect(res.status).toBe(201);
    expect(res.body.message).toMatchObject({ content: "What is in these?", content_parts: parts });
    // Text plus two images at a fixed estimate each: more than the text alone.
    expect(res.body.message.tokens).toBeGreaterThan(1_000);
    const sent = lastRequest().body.messages;
    expect(sent[0]).toEqual({ role: "user", content: "plain first" });
    expect(sent[1].content).toBe(ctx.upstream.replyTextFor("plain first"));
    expect(sent[2]).toEqual({ role: "user", content: parts });
  });

  it("refuses images over MAX_IMAGE_BYTES_PER_MESSAGE with a 413 naming the field", async () => {
    const conv = await newConversation();
    const big = `data:image/jpeg;base64,${Buffer.alloc(IMAGE_LIMIT + 3).toString("base64")}`;
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { content: [{ type: "image_url", image_url: { url: big } }] });
    expect(res.status).toBe(413);
    expect(res.body.error).toMatchObject({ code: "image_too_large", param: "content" });
  });
});

describe("reasoning and logprobs", () => {
  it("stores reasoning apart from the content, streams it, and does not send it back unless asked", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Let me ", "think."], text: "Forty-two.", reasoningField: "reasoning" });
    const conv = await newConversation();
    const res = await postForEvents(`${ctx.service.url}/v1/conversations/${conv}/messages`, { content: "meaning?", stream: true });
    const reasoningDeltas = res.events
      .filter((e) => e.event === "message.delta")
      .map((e) => JSON.parse(e.data).delta.reasoning ?? "")
      .join("");
    expect(reasoningDeltas).toBe("Let me think.");
    const completed = JSON.parse(res.events.find((e) => e.event === "message.completed")!.data);
    expect(completed).toMatchObject({ content: "Forty-two.", reasoning: "Let me think." });

    ctx.upstream.setBehaviour({ kind: "ok", text: "ok" });
    await ctx.api.post(`/conversations/${conv}/messages`, { content: "again" });
    expect(lastRequest().body.messages[1]).toEqual({ role: "assistant", content: "Forty-two." });

    await ctx.api.post(`/conversations/${conv}/messages`, { content: "with thoughts", params: { send_reasoning: true } });
    const body = lastRequest().body;
    expect(body.messages[1]).toEqual({ role: "assistant", content: "Forty-two.", reasoning_content: "Let me think." });
    expect(body).not.toHaveProperty("send_reasoning");
  });

  it("stores the logprobs the upstream streamed", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", text: "a b", logprobs: true });
    const conv = await newConversation();
    const res = await ctx.api.post(`/conversations/${conv}/messages`, { content: "x", params: { logprobs: true, top_logprobs: 2 } });
    expect(res.status).toBe(201);
    expect(lastRequest().body).toMatchObject({ logprobs: true, top_logprobs: 2 });
    const tokens = (res.body.reply.logprobs?.content ?? []).map((t: { token: string }) => t.token).join("");
    expect(tokens).toBe("a b");
  });
});
