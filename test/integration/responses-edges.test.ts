import OpenAI, { APIError } from "openai";
import { describe, expect, it } from "vitest";
import { toolLoop, upstreamError, type FakeToolCall } from "../support/fake-upstream.ts";
import { openaiAt } from "../support/openai-clients.ts";
import { ResponseResource, specIssues, StreamingEvent } from "../support/open-responses.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/*
 * The Responses API past the main paths, with the openai client: failures streamed and retrieved, background
 * streams, idempotent streams, store: false chains, instructions over a conversation's system prompt,
 * branching from a response of the caller's conversation, several tool calls, and what input_items lists.
 */

const ctx = useServiceWithFakeUpstream({ overrides: { DEFAULT_MODEL: "fake-model" } });
const openai = () => openaiAt(`${ctx.service.url}/v1`);

type StreamEvent = OpenAI.Responses.ResponseStreamEvent;

function conforming<T>(response: T): T {
  expect(specIssues(ResponseResource, response)).toEqual([]);
  return response;
}

async function collect(stream: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const e of stream) events.push(e);
  for (const e of events) expect({ type: e.type, issues: specIssues(StreamingEvent, e) }).toEqual({ type: e.type, issues: [] });
  const first = events[0]?.sequence_number ?? 0;
  expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => first + i));
  return events;
}

const types = (events: readonly StreamEvent[]) => events.map((e) => e.type);
const lastResponse = (events: readonly StreamEvent[]) => (events.at(-1) as { response: OpenAI.Responses.Response }).response;
const upstreamMessages = (i: number) => ctx.upstream.requests[i]?.body.messages;

const weather: OpenAI.Responses.FunctionTool = {
  type: "function",
  name: "get_weather",
  description: null,
  parameters: { type: "object", properties: { city: { type: "string" } } },
  strict: null,
};
const lisbon: Required<FakeToolCall> = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' };
const porto: Required<FakeToolCall> = { id: "call_porto", name: "get_weather", arguments: '{"city":"Porto"}' };

describe("failures", () => {
  it("an upstream that drops mid-stream: the stream ends with response.failed keeping the partial text; retrieve agrees", async () => {
    ctx.upstream.setBehaviour({ kind: "drop", afterTokens: 2 });
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "drop me", stream: true }));
    expect(events.at(-1)?.type).toBe("response.failed");
    const failed = lastResponse(events);
    expect(failed.status).toBe("failed");
    expect(failed.error).toEqual(expect.objectContaining({ code: expect.any(String), message: expect.any(String) }));
    const stored = conforming(await openai().responses.retrieve(failed.id));
    expect(stored.status).toBe("failed");
    expect(stored.output).toEqual(failed.output);
  });

  it("an upstream 400 on a streamed request: the stream says response.failed with the upstream's message", async () => {
    ctx.upstream.setBehaviour(upstreamError(400, { message: "fake refuses", code: "bad_thing" }));
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "refuse me", stream: true }));
    expect(types(events)).toEqual(["response.created", "response.in_progress", "response.failed"]);
    expect(lastResponse(events).error?.message).toContain("fake refuses");
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("a background response whose upstream fails is retrieved as failed", async () => {
    ctx.upstream.setBehaviour(upstreamError(400, { message: "fake refuses in the background" }));
    const created = await openai().responses.create({ model: "fake-model", input: "x", background: true });
    const failed = await eventually(
      async () => {
        const r = conforming(await openai().responses.retrieve(created.id));
        return r.status === "failed" && r;
      },
      { what: "the response failed", timeoutMs: 10_000 },
    );
    expect(failed.error?.message).toContain("fake refuses in the background");
  });
});

describe("streams", () => {
  it("background with stream: queued first, then in progress, then the text", async () => {
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "bg stream", background: true, stream: true }));
    expect(types(events).slice(0, 3)).toEqual(["response.created", "response.queued", "response.in_progress"]);
    expect((events[0] as { response: OpenAI.Responses.Response }).response.status).toBe("queued");
    expect(events.at(-1)?.type).toBe("response.completed");
  });

  it("an Idempotency-Key repeat of a streamed create streams the same events", async () => {
    const key = `edge-key-${Date.now()}`;
    const body = { model: "fake-model", input: "stream once", stream: true as const };
    const first = await collect(await openai().responses.create(body, { headers: { "Idempotency-Key": key } }));
    const again = await collect(await openai().responses.create(body, { headers: { "Idempotency-Key": key } }));
    expect(again).toEqual(first);
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("the stream helper gathers two parallel function calls", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon, porto], argumentFragmentChars: 4 });
    const stream = openai().responses.stream({ model: "fake-model", input: "both cities", tools: [weather] });
    const events: StreamEvent[] = [];
    stream.on("event", (e) => events.push(e));
    const response = conforming(await stream.finalResponse());
    expect(response.output.map((i) => (i.type === "function_call" ? [i.call_id, i.arguments] : [i.type]))).toEqual([
      ["call_lisbon", lisbon.arguments],
      ["call_porto", porto.arguments],
    ]);
    const added = events.filter((e) => e.type === "response.output_item.added").map((e) => (e as { output_index: number }).output_index);
    expect(added).toEqual([0, 1]);
  });

  it("tool_choice naming a function reaches the upstream in chat form", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon] });
    const response = conforming(
      await openai().responses.create({ model: "fake-model", input: "x", tools: [weather], tool_choice: { type: "function", name: "get_weather" } }),
    );
    expect(ctx.upstream.requests[0]?.body.tool_choice).toEqual({ type: "function", function: { name: "get_weather" } });
    expect(response.tool_choice).toEqual({ type: "function", name: "get_weather" });
  });
});

describe("state", () => {
  it("store: false continues a stored chain without storing itself", async () => {
    const first = await openai().responses.create({ model: "fake-model", input: "stored" });
    const unstored = conforming(await openai().responses.create({ model: "fake-model", input: "not stored", previous_response_id: first.id, store: false }));
    expect(unstored.output_text).toBe("Reply to: not stored");
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: "stored" },
      { role: "assistant", content: "Reply to: stored" },
      { role: "user", content: "not stored" },
    ]);
    await openai().responses.create({ model: "fake-model", input: "next", previous_response_id: first.id });
    expect(upstreamMessages(2)).toEqual([
      { role: "user", content: "stored" },
      { role: "assistant", content: "Reply to: stored" },
      { role: "user", content: "next" },
    ]);
  });

  it("instructions replace the conversation's system prompt for that response only", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { model: "fake-model", system: "Conversation system." });
    await openai().responses.create({ model: "fake-model", input: "one", conversation: conv.id, instructions: "Turn system." });
    await openai().responses.create({ model: "fake-model", input: "two", conversation: conv.id });
    expect(upstreamMessages(0)?.[0]).toEqual({ role: "system", content: "Turn system." });
    expect(upstreamMessages(1)).toEqual([
      { role: "system", content: "Conversation system." },
      { role: "user", content: "one" },
      { role: "assistant", content: "Reply to: one" },
      { role: "user", content: "two" },
    ]);
  });

  it("previous_response_id naming a response of the caller's conversation branches off it, leaving the conversation as it was", async () => {
    const conversation = await openai().conversations.create({});
    const r1 = await openai().responses.create({ model: "fake-model", input: "c1", conversation: conversation.id });
    await openai().responses.create({ model: "fake-model", input: "c2", conversation: conversation.id });
    const branch = conforming(await openai().responses.create({ model: "fake-model", input: "off c1", previous_response_id: r1.id }));
    expect(branch.conversation).toBeNull();
    expect(upstreamMessages(2)).toEqual([
      { role: "user", content: "c1" },
      { role: "assistant", content: "Reply to: c1" },
      { role: "user", content: "off c1" },
    ]);
    const items: OpenAI.Conversations.ConversationItem[] = [];
    for await (const item of openai().conversations.items.list(conversation.id)) items.push(item);
    expect(items).toHaveLength(4);
  });

  it("input_items lists only the response's own input, not the chain's history", async () => {
    const first = await openai().responses.create({ model: "fake-model", input: "earlier" });
    const second = await openai().responses.create({
      model: "fake-model",
      previous_response_id: first.id,
      input: [
        { role: "user", content: "a" },
        { role: "user", content: "b" },
      ],
    });
    const listed = await openai().responses.inputItems.list(second.id);
    // Newest first by default.
    expect(listed.data.map((i) => (i.type === "message" ? i.content.map((p) => ("text" in p ? p.text : "")).join("") : i.type))).toEqual(["b", "a"]);
  });

  it("a deleted response cannot be continued: 404 naming previous_response_id", async () => {
    const gone = await openai().responses.create({ model: "fake-model", input: "gone" });
    await openai().responses.delete(gone.id);
    const err = await openai()
      .responses.create({ model: "fake-model", input: "x", previous_response_id: gone.id })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect(err).toMatchObject({ status: 404, param: "previous_response_id" });
  });

  it("a tool loop on a conversation: the call and its output are conversation items", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const conversation = await openai().conversations.create({});
    const first = await openai().responses.create({ model: "fake-model", input: "weather?", tools: [weather], conversation: conversation.id });
    expect(first.output.map((i) => i.type)).toEqual(["function_call"]);
    const second = await openai().responses.create({
      model: "fake-model",
      tools: [weather],
      conversation: conversation.id,
      input: [{ type: "function_call_output", call_id: "call_lisbon", output: "sunny" }],
    });
    expect(second.output_text).toBe("Tool said: sunny");
    const items: OpenAI.Conversations.ConversationItem[] = [];
    for await (const item of openai().conversations.items.list(conversation.id, { order: "asc" })) items.push(item);
    expect(items.map((i) => i.type)).toEqual(["message", "function_call", "function_call_output", "message"]);
    expect(items[1]?.id).toBe(first.output[0]?.id);
  });
});

describe("replay once the events have expired", () => {
  it("streams a response from its stored row: the same items and final response as the live stream", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Hm", "m."], toolCalls: [lisbon], text: "Let me look." });
    const live = await collect(await openai().responses.create({ model: "fake-model", input: "expire me", tools: [weather], stream: true }));
    const done = lastResponse(live);
    const [record] = await ctx.service.sql`select reply_id from responses where id = ${done.id}`;
    const replyId = record!.reply_id as string;
    // The events stay in Redis for REPLY_EVENTS_TTL_SECONDS; drop them as expiry would, once the worker wrote its last.
    const { Redis } = await import("ioredis");
    const redis = new Redis(ctx.service.config.REDIS_URL);
    const key = `${ctx.service.config.REDIS_PREFIX}:reply-events:{${replyId}}`;
    await eventually(
      async () => {
        const [last] = (await redis.xrevrange(key, "+", "-", "COUNT", 1)) as [string, string[]][];
        return last?.[1].includes("done") ? true : null;
      },
      { what: "the reply's done event", timeoutMs: 20_000 },
    );
    await redis.del(key);
    redis.disconnect();

    const replay = await collect(await openai().responses.retrieve(done.id, { stream: true }));
    expect(replay.at(-1)?.type).toBe("response.completed");
    expect(lastResponse(replay)).toEqual(done);
    const itemsDone = (events: StreamEvent[]) => events.filter((e) => e.type === "response.output_item.done");
    expect(itemsDone(replay)).toEqual(itemsDone(live).map((e, i) => ({ ...e, sequence_number: itemsDone(replay)[i]?.sequence_number })));
  });
});

describe("refusals", () => {
  it("an unknown conversation is a 404 naming conversation; an unserved model a 404 naming model", async () => {
    const noConversation = await openai()
      .responses.create({ model: "fake-model", input: "x", conversation: "conv_01jf3t8vvaf8s9k0d7k6x1s2y3" })
      .catch((e: unknown) => e);
    expect(noConversation).toMatchObject({ status: 404, param: "conversation" });
    const noModel = await openai()
      .responses.create({ model: "no-such-model", input: "x" })
      .catch((e: unknown) => e);
    expect(noModel).toMatchObject({ status: 404, param: "model" });
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("a chain's hidden conversations are not listed among the caller's conversations", async () => {
    const first = await openai().responses.create({ model: "fake-model", input: "hidden" });
    await openai().responses.create({ model: "fake-model", input: "hidden 2", previous_response_id: first.id });
    const [record] = await ctx.service.sql`select conversation_id from responses where id = ${first.id}`;
    const { body } = await ctx.api.get("/conversations?limit=100");
    expect(body.data.map((c: { id: string }) => c.id)).not.toContain(record!.conversation_id);
  });
});

describe("lifecycle", () => {
  it("two responses continuing the same previous one at the same time each see only their own line", async () => {
    const root = await openai().responses.create({ model: "fake-model", input: "root" });
    ctx.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 30 });
    const [a, b] = await Promise.all(
      ["left", "right"].map((input) => openai().responses.create({ model: "fake-model", input, previous_response_id: root.id })),
    );
    expect([a!.output_text, b!.output_text]).toEqual(["Reply to: left", "Reply to: right"]);
    const sent = ctx.upstream.requests.slice(1).map((r) => r.body.messages);
    expect(sent).toHaveLength(2);
    for (const messages of sent) {
      expect(messages.slice(0, 2)).toEqual([
        { role: "user", content: "root" },
        { role: "assistant", content: "Reply to: root" },
      ]);
      expect(messages).toHaveLength(3);
    }
    const [ca, cb] = await Promise.all(
      [a!, b!].map((r) => openai().responses.create({ model: "fake-model", input: "next", previous_response_id: r.id })),
    );
    expect(ca!.status).toBe("completed");
    expect(cb!.status).toBe("completed");
    const lines = ctx.upstream.requests.slice(3).map((r) => (r.body.messages as { content: string }[]).map((m) => m.content));
    expect(lines.map((l) => l[2]).sort()).toEqual(["left", "right"]);
    for (const l of lines) expect(l).toHaveLength(5);
  });

  it("the same Idempotency-Key sent twice at once: one response, one upstream call", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", tokenDelayMs: 30 });
    const key = `race-key-${Date.now()}`;
    const body = { model: "fake-model", input: "race" };
    const results = await Promise.allSettled([0, 1].map(() => openai().responses.create(body, { headers: { "Idempotency-Key": key } })));
    const ids = results.flatMap((r) => (r.status === "fulfilled" ? [r.value.id] : []));
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
    // The loser either waits and answers the same response or is told the first is still running (409).
    for (const e of refused) expect(e).toMatchObject({ status: 409 });
    expect(new Set(ids).size).toBe(1);
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("a background response cancelled while queued ends cancelled with no output, and its stream ends", async () => {
    ctx.upstream.setBehaviour({ kind: "hang" });
    const created = await openai().responses.create({ model: "fake-model", input: "never mind", background: true });
    const following = openai().responses.retrieve(created.id, { stream: true }).then(collect);
    const cancelled = conforming(await openai().responses.cancel(created.id));
    expect(cancelled.status).toBe("cancelled");
    const events = await following;
    expect(lastResponse(events).status).toBe("cancelled");
    const again = conforming(await openai().responses.cancel(created.id));
    expect(again.status).toBe("cancelled");
  });

  it("deleting a response in flight stops it; its followers' stream ends", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 50, tokenDelayMs: 50 });
    const created = await openai().responses.create({ model: "fake-model", input: "delete while running", background: true });
    const following = openai().responses.retrieve(created.id, { stream: true }).then(collect);
    await eventually(async () => (await openai().responses.retrieve(created.id)).output_text.length > 0, { what: "some output", timeoutMs: 10_000 });
    await openai().responses.delete(created.id);
    const events = await following;
    expect(lastResponse(events).status).toBe("cancelled");
    expect(await openai().responses.retrieve(created.id).catch((e: unknown) => e)).toMatchObject({ status: 404 });
  });

  it("a response whose conversation was deleted is gone (404), and cannot be continued", async () => {
    const conversation = await openai().conversations.create({});
    const r = await openai().responses.create({ model: "fake-model", input: "x", conversation: conversation.id });
    await openai().conversations.delete(conversation.id);
    expect(await openai().responses.retrieve(r.id).catch((e: unknown) => e)).toMatchObject({ status: 404 });
    expect(await openai().responses.inputItems.list(r.id).catch((e: unknown) => e)).toMatchObject({ status: 404 });
    const next = await openai()
      .responses.create({ model: "fake-model", input: "y", previous_response_id: r.id })
      .catch((e: unknown) => e);
    expect(next).toMatchObject({ status: 404, param: "previous_response_id" });
  });

  it("a response whose reply item was deleted from its conversation still answers retrieve (with no output), streamed or not", async () => {
    const conversation = await openai().conversations.create({});
    const r = await openai().responses.create({ model: "fake-model", input: "x", conversation: conversation.id });
    await openai().conversations.items.delete((r.output[0] as OpenAI.Responses.ResponseOutputMessage).id, { conversation_id: conversation.id });
    const found = conforming(await openai().responses.retrieve(r.id));
    expect(found).toMatchObject({ id: r.id, output: [] });
    const events = await collect(await openai().responses.retrieve(r.id, { stream: true }));
    expect(types(events)).toEqual(["response.created", "response.in_progress", "response.completed"]);
    expect(lastResponse(events)).toMatchObject({ id: r.id, status: "completed", output: [] });
  });
});

describe("fields", () => {
  it("a message of one input_text part reaches the upstream as a plain string (as chat templates expect); more parts stay parts", async () => {
    await openai().responses.create({ model: "fake-model", input: [{ role: "user", content: [{ type: "input_text", text: "one part" }] }] });
    expect(upstreamMessages(0)).toEqual([{ role: "user", content: "one part" }]);
    const two = [
      { type: "input_text" as const, text: "first, " },
      { type: "input_text" as const, text: "second" },
    ];
    const r = await openai().responses.create({ model: "fake-model", input: [{ role: "user", content: two }] });
    expect(upstreamMessages(1)).toEqual([{ role: "user", content: two.map((p) => ({ type: "text", text: p.text })) }]);
    const items = await openai().responses.inputItems.list(r.id);
    expect(items.data[0]).toMatchObject({ type: "message", content: two });
  });

  it("temperature, top_p and metadata are echoed; sampling reaches the upstream", async () => {
    const r = conforming(
      await openai().responses.create({ model: "fake-model", input: "x", temperature: 0.3, top_p: 0.9, metadata: { app: "edges" }, user: "u1" }),
    );
    expect(r).toMatchObject({ temperature: 0.3, top_p: 0.9, metadata: { app: "edges" } });
    expect(ctx.upstream.requests[0]?.body).toMatchObject({ temperature: 0.3, top_p: 0.9 });
    expect(conforming(await openai().responses.retrieve(r.id))).toMatchObject({ temperature: 0.3, top_p: 0.9, metadata: { app: "edges" } });
  });

  it("logprobs when included: asked of the upstream, on the output text, streamed and stored", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", logprobs: true });
    const events = await collect(
      await openai().responses.create({ model: "fake-model", input: "lp", top_logprobs: 2, include: ["message.output_text.logprobs"], stream: true }),
    );
    expect(ctx.upstream.requests[0]?.body).toMatchObject({ logprobs: true, top_logprobs: 2 });
    const deltas = events.filter((e) => e.type === "response.output_text.delta");
    expect(deltas.every((d) => (d as { logprobs: unknown[] }).logprobs.length === 1)).toBe(true);
    const done = lastResponse(events);
    const part = (done.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText;
    expect(part.logprobs).toHaveLength(3); // "Reply", " to:", " lp"
    const stored = await openai().responses.retrieve(done.id, { include: ["message.output_text.logprobs"] });
    expect(((stored.output[0] as OpenAI.Responses.ResponseOutputMessage).content[0] as OpenAI.Responses.ResponseOutputText).logprobs).toEqual(part.logprobs);
  });

  it("an empty input continuing a chain is a turn of its own: the upstream gets the history as it was", async () => {
    const first = await openai().responses.create({ model: "fake-model", input: "first" });
    const r = conforming(await openai().responses.create({ model: "fake-model", input: [], previous_response_id: first.id }));
    expect(r.status).toBe("completed");
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: "first" },
      { role: "assistant", content: "Reply to: first" },
    ]);
    expect((await openai().responses.inputItems.list(r.id)).data).toEqual([]);
  });
});

describe("history kept by the client", () => {
  it("a response's output items sent back verbatim as input (message, reasoning, function call) are taken", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon], extra: { reasoning: ["Hm."] } }));
    const first = await openai().responses.create({ model: "fake-model", input: "weather?", tools: [weather], store: false });
    expect(first.output.map((i) => i.type)).toEqual(["reasoning", "function_call"]);
    const input: OpenAI.Responses.ResponseInput = [
      { role: "user", content: "weather?" },
      ...(first.output as OpenAI.Responses.ResponseInputItem[]),
      { type: "function_call_output", call_id: "call_lisbon", output: "sunny" },
    ];
    const second = conforming(await openai().responses.create({ model: "fake-model", input, tools: [weather], store: false }));
    expect(second.output_text).toBe("Tool said: sunny");
    const third = conforming(
      await openai().responses.create({
        model: "fake-model",
        input: [...input, ...(second.output as OpenAI.Responses.ResponseInputItem[]), { role: "user", content: "thanks" }],
        store: false,
      }),
    );
    expect(third.status).toBe("completed");
    expect(upstreamMessages(2)).toEqual([
      { role: "user", content: "weather?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_lisbon", type: "function", function: { name: "get_weather", arguments: lisbon.arguments } }] },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny" },
      { role: "assistant", content: "Tool said: sunny" },
      { role: "user", content: "thanks" },
    ]);
  });

  it("a stored response's output items sent back with logprobs included are taken", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", logprobs: true });
    const first = await openai().responses.create({ model: "fake-model", input: "hi", include: ["message.output_text.logprobs"] });
    const second = conforming(
      await openai().responses.create({
        model: "fake-model",
        input: [{ role: "user", content: "hi" }, ...(first.output as OpenAI.Responses.ResponseInputItem[]), { role: "user", content: "again" }],
      }),
    );
    expect(second.status).toBe("completed");
    expect(upstreamMessages(1)?.[1]).toEqual({ role: "assistant", content: "Reply to: hi" });
  });
});

