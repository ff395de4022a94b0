import OpenAI, { APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { toolLoop, upstreamError, type FakeToolCall } from "../support/fake-upstream.ts";
import { openaiAt } from "../support/openai-clients.ts";
import { ResponseResource, specIssues, StreamingEvent } from "../support/open-responses.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/*
 * OpenAI's Responses API on Parley, with the official openai client over real HTTP against a fake
 * chat-completions upstream: what reaches the upstream, what the client gets back (every response object
 * and streamed event checked against the Open Responses schemas), chains, conversations, background
 * responses followed from another API instance, durability and errors.
 */

const ctx = useServiceWithFakeUpstream({ overrides: { DEFAULT_MODEL: "fake-model" } });
const openai = (options: ConstructorParameters<typeof OpenAI>[0] = {}) => openaiAt(`${ctx.service.url}/v1`, options);

type StreamEvent = OpenAI.Responses.ResponseStreamEvent;

/** A response object as the spec defines it (returned for chaining). */
function conforming<T>(response: T): T {
  expect(specIssues(ResponseResource, response)).toEqual([]);
  return response;
}

/** Every event conforms, and the sequence numbers run on by one from the first. */
function expectConformingEvents(events: readonly StreamEvent[]) {
  for (const e of events) expect({ type: e.type, issues: specIssues(StreamingEvent, e) }).toEqual({ type: e.type, issues: [] });
  const first = events[0]?.sequence_number ?? 0;
  expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => first + i));
}

async function collect(stream: AsyncIterable<StreamEvent>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const e of stream) events.push(e);
  expectConformingEvents(events);
  return events;
}

const types = (events: readonly StreamEvent[]) => events.map((e) => e.type);
const finalResponse = (events: readonly StreamEvent[]) => {
  const last = events.at(-1) as { type: string; response?: OpenAI.Responses.Response };
  if (!last.response) throw new Error(`the stream ended with ${last.type}`);
  return last.response;
};
/** The output text (the SDK adds `output_text` to what create and retrieve answer, not to a streamed event's response). */
const textOf = (response: OpenAI.Responses.Response) =>
  response.output.flatMap((i) => (i.type === "message" ? i.content.flatMap((p) => (p.type === "output_text" ? [p.text] : [])) : [])).join("");
const upstreamMessages = (i: number) => ctx.upstream.requests[i]?.body.messages;

const weather: OpenAI.Responses.FunctionTool = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city.",
  // Properties out of alphabetical order, `required` first: kept as written.
  parameters: { type: "object", required: ["city"], properties: { unit: { type: "string" }, city: { type: "string" } } },
  strict: false,
};
const lisbon: Required<FakeToolCall> = { id: "call_lisbon", name: "get_weather", arguments: '{"city":"Lisbon"}' };

/** A chunk stream the fake sends after `afterTokens` deltas: the finish reason `length`, then [DONE]. */
const cutShort = (afterTokens: number) => ({
  kind: "stream-then" as const,
  afterTokens,
  raw:
    `data: ${JSON.stringify({ id: "x", object: "chat.completion.chunk", created: 0, model: "fake-model", choices: [{ index: 0, delta: {}, finish_reason: "length" }] })}\n\n` +
    "data: [DONE]\n\n",
});

describe("create: text", () => {
  it("answers a string input, non-streamed, as a completed response with one output message", async () => {
    const response = conforming(await openai().responses.create({ model: "fake-model", input: "hello there" }));
    expect(response.status).toBe("completed");
    expect(response.output_text).toBe("Reply to: hello there");
    expect(response.output).toEqual([
      expect.objectContaining({ type: "message", role: "assistant", status: "completed", content: [expect.objectContaining({ type: "output_text", text: "Reply to: hello there" })] }),
    ]);
    expect(response.usage).toEqual(expect.objectContaining({ input_tokens: 2, output_tokens: 4, total_tokens: 6 }));
    expect(upstreamMessages(0)).toEqual([{ role: "user", content: "hello there" }]);
  });

  it("streams the events in the spec's order, the text as deltas, and ends with the stored response", async () => {
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "stream me", stream: true }));
    expect(types(events)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      ...Array(4).fill("response.output_text.delta"),
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events[0]?.sequence_number).toBe(0);
    const deltas = events.flatMap((e) => (e.type === "response.output_text.delta" ? [e.delta] : []));
    expect(deltas).toEqual(["Reply", " to:", " stream", " me"]);
    const done = finalResponse(events);
    expect(done.status).toBe("completed");
    const stored = conforming(await openai().responses.retrieve(done.id));
    expect(stored.output).toEqual(done.output);
    expect(stored.usage).toEqual(done.usage);
  });

  it("the SDK's stream helper puts the text together", async () => {
    const stream = openai().responses.stream({ model: "fake-model", input: "helper" });
    const response = conforming(await stream.finalResponse());
    expect(response.output_text).toBe("Reply to: helper");
  });
});

describe("create: instructions", () => {
  it("reach the upstream as the system message, and are not carried to the next response of the chain", async () => {
    const first = conforming(await openai().responses.create({ model: "fake-model", instructions: "Talk like a pirate.", input: "hi" }));
    expect(first.instructions).toBe("Talk like a pirate.");
    expect(upstreamMessages(0)).toEqual([
      { role: "system", content: "Talk like a pirate." },
      { role: "user", content: "hi" },
    ]);
    const second = conforming(await openai().responses.create({ model: "fake-model", previous_response_id: first.id, input: "again" }));
    expect(second.instructions).toBeNull();
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: "hi" },
      { role: "assistant", content: "Reply to: hi" },
      { role: "user", content: "again" },
    ]);
    const third = await openai().responses.create({ model: "fake-model", previous_response_id: second.id, instructions: "Be brief.", input: "more" });
    expect(third.status).toBe("completed");
    expect(upstreamMessages(2)?.[0]).toEqual({ role: "system", content: "Be brief." });
    expect(upstreamMessages(2)?.filter((m: { role: string }) => m.role === "system")).toHaveLength(1);
  });
});

describe("create: tools", () => {
  it("sends function tools as chat tools with their keys as written, and answers a call with function_call items", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [lisbon] });
    const response = conforming(
      await openai().responses.create({ model: "fake-model", input: "Weather in Lisbon?", tools: [weather], tool_choice: "auto", parallel_tool_calls: false }),
    );
    const sent = ctx.upstream.requests[0]!;
    expect(sent.body.tools).toEqual([
      { type: "function", function: { name: "get_weather", description: "The weather in a city.", parameters: weather.parameters, strict: false } },
    ]);
    expect(sent.raw).toContain(JSON.stringify(weather.parameters));
    expect(sent.body.tool_choice).toBe("auto");
    expect(sent.body.parallel_tool_calls).toBe(false);
    expect(response.status).toBe("completed");
    expect(response.output).toEqual([expect.objectContaining({ type: "function_call", call_id: "call_lisbon", name: "get_weather", arguments: lisbon.arguments })]);
    expect(response.tools).toEqual([weather]);
  });

  it("streams a call's arguments, and continues when the output comes back as function_call_output", async () => {
    ctx.upstream.setBehaviour(toolLoop({ calls: [lisbon] }));
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "Weather in Lisbon?", tools: [weather], stream: true }));
    const args = events.flatMap((e) => (e.type === "response.function_call_arguments.delta" ? [e.delta] : []));
    expect(args.join("")).toBe(lisbon.arguments);
    const argsDone = events.find((e) => e.type === "response.function_call_arguments.done");
    expect(argsDone).toEqual(expect.objectContaining({ arguments: lisbon.arguments }));
    const first = finalResponse(events);
    const call = first.output.find((i) => i.type === "function_call");
    expect(call).toEqual(expect.objectContaining({ call_id: "call_lisbon", name: "get_weather", status: "completed" }));

    const second = conforming(
      await openai().responses.create({
        model: "fake-model",
        previous_response_id: first.id,
        tools: [weather],
        input: [{ type: "function_call_output", call_id: "call_lisbon", output: "sunny" }],
      }),
    );
    expect(second.output_text).toBe("Tool said: sunny");
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: "Weather in Lisbon?" },
      { role: "assistant", content: null, tool_calls: [{ id: "call_lisbon", type: "function", function: { name: "get_weather", arguments: lisbon.arguments } }] },
      { role: "tool", tool_call_id: "call_lisbon", content: "sunny" },
    ]);
  });
});

describe("create: reasoning, length, json schema", () => {
  it("turns streamed reasoning_content into a reasoning item and response.reasoning_text events", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Thinking", " hard."] });
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "why?", stream: true, reasoning: { effort: "low" } }));
    expect(ctx.upstream.requests[0]?.body.reasoning_effort).toBe("low");
    const reasoningDeltas = events.flatMap((e) => (e.type === "response.reasoning_text.delta" ? [e.delta] : []));
    expect(reasoningDeltas).toEqual(["Thinking", " hard."]);
    expect(types(events)).toContain("response.reasoning_text.done");
    const response = finalResponse(events);
    expect(response.output.map((i) => i.type)).toEqual(["reasoning", "message"]);
    expect(response.output[0]).toEqual(expect.objectContaining({ type: "reasoning", content: [{ type: "reasoning_text", text: "Thinking hard." }] }));
    const stored = conforming(await openai().responses.retrieve(response.id));
    expect(stored.output).toEqual(response.output);
  });

  it("max_output_tokens reaches the upstream as max_tokens; a `length` finish is status incomplete with its reason", async () => {
    ctx.upstream.setBehaviour(cutShort(2));
    const events = await collect(await openai().responses.create({ model: "fake-model", input: "a long story please", max_output_tokens: 16, stream: true }));
    expect(ctx.upstream.requests[0]?.body.max_tokens).toBe(16);
    expect(events.at(-1)?.type).toBe("response.incomplete");
    const response = finalResponse(events);
    expect(response.status).toBe("incomplete");
    expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(textOf(response)).toBe("Reply to:");
    const stored = conforming(await openai().responses.retrieve(response.id));
    expect(stored.status).toBe("incomplete");
    expect(stored.incomplete_details).toEqual({ reason: "max_output_tokens" });

    ctx.upstream.setBehaviour(cutShort(1));
    const whole = conforming(await openai().responses.create({ model: "fake-model", input: "again", max_output_tokens: 16 }));
    expect(whole.status).toBe("incomplete");
    expect(whole.incomplete_details).toEqual({ reason: "max_output_tokens" });
  });

  it("text.format json_schema reaches the upstream as response_format, the schema's keys in the client's order", async () => {
    const schema = { type: "object", properties: { zeta: { type: "string" }, alpha: { type: "number" } }, required: ["zeta", "alpha"], additionalProperties: false };
    const response = conforming(
      await openai().responses.create({ model: "fake-model", input: "json", text: { format: { type: "json_schema", name: "out", schema, strict: true } } }),
    );
    const sent = ctx.upstream.requests[0]!;
    expect(sent.body.response_format).toEqual({ type: "json_schema", json_schema: { name: "out", schema, strict: true } });
    expect(sent.raw).toContain(JSON.stringify(schema));
    expect(JSON.stringify(response.text?.format)).toContain(JSON.stringify(schema));
  });
});

describe("previous_response_id chains", () => {
  it("a linear chain sends the whole history", async () => {
    const one = await openai().responses.create({ model: "fake-model", input: "one" });
    const two = await openai().responses.create({ model: "fake-model", input: "two", previous_response_id: one.id });
    const three = conforming(await openai().responses.create({ model: "fake-model", input: "three", previous_response_id: two.id }));
    expect(three.previous_response_id).toBe(two.id);
    expect(upstreamMessages(2)).toEqual([
      { role: "user", content: "one" },
      { role: "assistant", content: "Reply to: one" },
      { role: "user", content: "two" },
      { role: "assistant", content: "Reply to: two" },
      { role: "user", content: "three" },
    ]);
  });

  it("two responses from the same previous one each see only their own line", async () => {
    const root = await openai().responses.create({ model: "fake-model", input: "root" });
    const a = await openai().responses.create({ model: "fake-model", input: "branch a", previous_response_id: root.id });
    const b = await openai().responses.create({ model: "fake-model", input: "branch b", previous_response_id: root.id });
    await openai().responses.create({ model: "fake-model", input: "after a", previous_response_id: a.id });
    await openai().responses.create({ model: "fake-model", input: "after b", previous_response_id: b.id });
    const head = [
      { role: "user", content: "root" },
      { role: "assistant", content: "Reply to: root" },
    ];
    expect(upstreamMessages(2)).toEqual([...head, { role: "user", content: "branch b" }]);
    expect(upstreamMessages(3)).toEqual([...head, { role: "user", content: "branch a" }, { role: "assistant", content: "Reply to: branch a" }, { role: "user", content: "after a" }]);
    expect(upstreamMessages(4)).toEqual([...head, { role: "user", content: "branch b" }, { role: "assistant", content: "Reply to: branch b" }, { role: "user", content: "after b" }]);
  });

  it("an unknown previous response is a 404 naming previous_response_id", async () => {
    const err = await openai()
      .responses.create({ model: "fake-model", input: "x", previous_response_id: "resp_01jf3t8vvaf8s9k0d7k6x1s2y3" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect(err).toMatchObject({ status: 404, param: "previous_response_id" });
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("conversation with previous_response_id is a 400", async () => {
    const conversation = await openai().conversations.create({});
    const prev = await openai().responses.create({ model: "fake-model", input: "x" });
    const err = await openai()
      .responses.create({ model: "fake-model", input: "y", conversation: conversation.id, previous_response_id: prev.id })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect(err).toMatchObject({ status: 400, param: "previous_response_id", type: "invalid_request_error" });
  });
});

describe("conversation", () => {
  it("two responses on a conversation: the second sees the first turn; its items list input and output", async () => {
    const conversation = await openai().conversations.create({});
    const first = conforming(await openai().responses.create({ model: "fake-model", input: "first", conversation: conversation.id }));
    expect(first.conversation).toEqual({ id: conversation.id });
    await openai().responses.create({ model: "fake-model", input: "second", conversation: { id: conversation.id } });
    expect(upstreamMessages(1)).toEqual([
      { role: "user", content: "first" },
      { role: "assistant", content: "Reply to: first" },
      { role: "user", content: "second" },
    ]);
    const items: OpenAI.Conversations.ConversationItem[] = [];
    for await (const item of openai().conversations.items.list(conversation.id, { order: "asc" })) items.push(item);
    const summary = items.map((i) => (i.type === "message" ? [i.role, i.content.map((p) => ("text" in p ? p.text : p.type)).join("")] : [i.type]));
    expect(summary).toEqual([
      ["user", "first"],
      ["assistant", "Reply to: first"],
      ["user", "second"],
      ["assistant", "Reply to: second"],
    ]);
    expect(items[1]?.id).toBe(first.output[0]?.id);
  });

  it("a second response while one is in flight is refused: 400 conversation_locked naming conversation", async () => {
    const conversation = await openai().conversations.create({});
    ctx.upstream.setBehaviour({ kind: "hang" });
    const running = conforming(await openai().responses.create({ model: "fake-model", input: "slow", conversation: conversation.id, background: true }));
    expect(["queued", "in_progress"]).toContain(running.status);
    const err = await openai()
      .responses.create({ model: "fake-model", input: "meanwhile", conversation: conversation.id })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect(err).toMatchObject({ status: 400, code: "conversation_locked", param: "conversation", type: "invalid_request_error" });
    const cancelled = conforming(await openai().responses.cancel(running.id));
    expect(cancelled.status).toBe("cancelled");
  });

  it("is usable through the bound chat-completions endpoint and the native messages API", async () => {
    const conversation = await openai().conversations.create({});
    await openai().responses.create({ model: "fake-model", input: "via responses", conversation: conversation.id });
    const bound = openaiAt(`${ctx.service.url}/v1/conversations/${conversation.id}`);
    const completion = await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "via chat" }] });
    expect(completion.choices[0]?.message.content).toBe("Reply to: via chat");
    const native = await ctx.api.post(`/conversations/${conversation.id}/messages`, { content: "via native" });
    expect(native.status).toBe(201);
    const last = conforming(await openai().responses.create({ model: "fake-model", input: "back to responses", conversation: conversation.id }));
    expect(last.output_text).toBe("Reply to: back to responses");
    expect(upstreamMessages(3)).toEqual([
      { role: "user", content: "via responses" },
      { role: "assistant", content: "Reply to: via responses" },
      { role: "user", content: "via chat" },
      { role: "assistant", content: "Reply to: via chat" },
      { role: "user", content: "via native" },
      { role: "assistant", content: "Reply to: via native" },
      { role: "user", content: "back to responses" },
    ]);
    const { body } = await ctx.api.get(`/conversations/${conversation.id}/messages?limit=20`);
    expect(body.data.map((m: { content: string }) => m.content)).toContain("Reply to: back to responses");
  });
});

describe("background, followed from another API instance", () => {
  let second: RunningService;
  const secondClient = () => openaiAt(`${second.url}/v1`);
  beforeAll(async () => {
    // A second API instance on the same Postgres and Redis prefix, with no worker of its own.
    second = await startService({ ...ctx.service.config, ROLE: "api", PORT: 0 }, createLogger("silent"));
  });
  afterAll(() => second?.stop());

  const retrieveUntil = (id: string, done: (r: OpenAI.Responses.Response) => boolean) =>
    eventually(
      async () => {
        const r = conforming(await openai().responses.retrieve(id));
        return done(r) && r;
      },
      { what: `response ${id}`, timeoutMs: 15_000 },
    );

  it("answers queued at once, completes on the worker; a replay from another instance, whole or after N, repeats and loses nothing", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 12, tokenDelayMs: 60 });
    const created = conforming(await openai().responses.create({ model: "fake-model", input: "background please", background: true }));
    // Answered before the reply (12 tokens, 60 ms apart) could have ended.
    expect(["queued", "in_progress"]).toContain(created.status);
    expect(created.background).toBe(true);

    // Followed live from the first instance, from the start.
    const live = await collect(await openai().responses.retrieve(created.id, { stream: true }));
    expect(types(live).slice(0, 3)).toEqual(["response.created", "response.queued", "response.in_progress"]);
    expect(live.at(-1)?.type).toBe("response.completed");
    expect(live[0]?.sequence_number).toBe(0);

    const done = await retrieveUntil(created.id, (r) => r.status === "completed");
    expect(done.output_text).toBe(Array.from({ length: 12 }, (_, i) => ` w${i}`).join(""));
    expect(finalResponse(live).output).toEqual(done.output);

    const replay = await collect(await secondClient().responses.retrieve(created.id, { stream: true }));
    expect(replay).toEqual(live);
    for (const n of [0, 5, live.length - 2]) {
      const after = await collect(await secondClient().responses.retrieve(created.id, { stream: true, starting_after: n }));
      expect(after).toEqual(live.filter((e) => e.sequence_number > n));
    }
  });

  it("a follower that joins mid-stream on another instance, after N, gets exactly the rest of the first stream", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 20, tokenDelayMs: 80 });
    const created = await openai().responses.create({ model: "fake-model", input: "join me", background: true });
    const first: StreamEvent[] = [];
    let joined: Promise<StreamEvent[]> | undefined;
    for await (const e of await openai().responses.retrieve(created.id, { stream: true })) {
      first.push(e);
      const deltas = first.filter((x) => x.type === "response.output_text.delta").length;
      if (deltas === 4 && !joined) joined = secondClient().responses.retrieve(created.id, { stream: true, starting_after: e.sequence_number }).then(collect);
    }
    expectConformingEvents(first);
    const cut = first.find((e) => e.type === "response.output_text.delta" && first.filter((x) => x.type === "response.output_text.delta").indexOf(e) === 3)!;
    expect(await joined).toEqual(first.filter((e) => e.sequence_number > cut.sequence_number));
  });

  it("cancel mid-stream keeps the partial output: status cancelled", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 50, tokenDelayMs: 80 });
    const created = await openai().responses.create({ model: "fake-model", input: "cancel me", background: true });
    const events: StreamEvent[] = [];
    let cancelled: OpenAI.Responses.Response | undefined;
    for await (const e of await secondClient().responses.retrieve(created.id, { stream: true })) {
      events.push(e);
      if (!cancelled && events.filter((x) => x.type === "response.output_text.delta").length === 3) cancelled = await openai().responses.cancel(created.id);
    }
    expectConformingEvents(events);
    expect(conforming(cancelled!).status).toBe("cancelled");
    const last = finalResponse(events);
    expect(last.status).toBe("cancelled");
    const stored = conforming(await openai().responses.retrieve(created.id));
    expect(stored.status).toBe("cancelled");
    expect(stored.output_text.startsWith(" w0 w1 w2")).toBe(true);
    expect(stored.output_text.length).toBeLessThan(Array.from({ length: 50 }, (_, i) => ` w${i}`).join("").length);
    expect(textOf(last)).toBe(stored.output_text);
  });

  it("delete: the response is gone (404)", async () => {
    const created = await openai().responses.create({ model: "fake-model", input: "delete me" });
    await openai().responses.delete(created.id);
    const err = await openai().responses.retrieve(created.id).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404 });
    const again = await openai().responses.delete(created.id).catch((e: unknown) => e);
    expect(again).toMatchObject({ status: 404 });
  });

  it("store: false answers but cannot be retrieved; background with store: false is a 400", async () => {
    const unstored = conforming(await openai().responses.create({ model: "fake-model", input: "forget me", store: false }));
    expect(unstored.output_text).toBe("Reply to: forget me");
    expect((unstored as unknown as { store: boolean }).store).toBe(false);
    const err = await openai().responses.retrieve(unstored.id).catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404 });
    const streamed = await collect(await openai().responses.create({ model: "fake-model", input: "forget me too", store: false, stream: true }));
    expect(streamed.at(-1)?.type).toBe("response.completed");
    const refused = await openai()
      .responses.create({ model: "fake-model", input: "x", store: false, background: true })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(APIError);
    expect(refused).toMatchObject({ status: 400, param: "background" });
  });
});

describe("durability", () => {
  it("an Idempotency-Key repeat answers the same response and stores nothing twice", async () => {
    const key = `resp-key-${Date.now()}`;
    const body = { model: "fake-model", input: "only once" };
    const first = conforming(await openai().responses.create(body, { headers: { "Idempotency-Key": key } }));
    const again = conforming(await openai().responses.create(body, { headers: { "Idempotency-Key": key } }));
    expect(again.id).toBe(first.id);
    expect(again.output).toEqual(first.output);
    expect(ctx.upstream.requests).toHaveLength(1);
    const [record] = await ctx.service.sql`select conversation_id from responses where id = ${first.id}`;
    const [{ n }] = (await ctx.service.sql`select count(*)::int as n from messages where conversation_id = ${record!.conversation_id}`) as unknown as [{ n: number }];
    expect(n).toBe(2);
    const [{ r }] = (await ctx.service.sql`select count(*)::int as r from responses where conversation_id = ${record!.conversation_id}`) as unknown as [{ r: number }];
    expect(r).toBe(1);
  });

  it("a client leaving a streamed stored response does not stop it: retrieved later, it completed", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 15, tokenDelayMs: 50 });
    const stream = await openai().responses.create({ model: "fake-model", input: "I will leave", stream: true });
    let id: string | undefined;
    let deltas = 0;
    for await (const e of stream) {
      if (e.type === "response.created") id = e.response.id;
      if (e.type === "response.output_text.delta" && ++deltas === 2) break; // leaves: the SDK aborts the request
    }
    const done = await eventually(
      async () => {
        const r = await openai().responses.retrieve(id!);
        return r.status === "completed" && r;
      },
      { what: "the abandoned response completed", timeoutMs: 15_000 },
    );
    expect(done.output_text).toBe(Array.from({ length: 15 }, (_, i) => ` w${i}`).join(""));
    expect(ctx.upstream.requests[0]?.closedEarly).toBe(false);
  });
});

describe("errors in OpenAI's shape", () => {
  const refusal = async (call: Promise<unknown>) => {
    const err = await call.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    return err as APIError;
  };

  it("an unknown item type is a 400 naming the item", async () => {
    const err = await refusal(openai().responses.create({ model: "fake-model", input: [{ type: "bogus_item", text: "x" } as never] }));
    expect(err).toMatchObject({ status: 400, type: "invalid_request_error" });
    expect(err.param).toMatch(/^input\[0\]|^input\.0/);
    expect(err.message).toMatch(/bogus_item|type/);
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("a tool type other than function is a 400 naming the tool", async () => {
    const err = await refusal(openai().responses.create({ model: "fake-model", input: "x", tools: [{ type: "web_search" } as never] }));
    expect(err).toMatchObject({ status: 400, type: "invalid_request_error" });
    expect(err.param).toMatch(/^tools/);
    expect(err.message).toMatch(/function/);
  });

  it("a function_call_output whose call_id answers no call is a 400", async () => {
    const err = await refusal(
      openai().responses.create({ model: "fake-model", input: [{ type: "function_call_output", call_id: "call_nobody", output: "42" }] }),
    );
    expect(err).toMatchObject({ status: 400, type: "invalid_request_error" });
    expect(err.message).toContain("call_nobody");
    expect(ctx.upstream.requests).toHaveLength(0);
  });

  it("an unknown response id is a 404, for every route", async () => {
    const id = "resp_01jf3t8vvaf8s9k0d7k6x1s2y3";
    for (const call of [
      () => openai().responses.retrieve(id),
      () => openai().responses.retrieve(id, { stream: true }),
      () => openai().responses.cancel(id),
      () => openai().responses.delete(id),
      () => openai().responses.inputItems.list(id),
      () => openai().responses.retrieve("not-an-id"),
    ]) {
      expect(await refusal(call() as Promise<unknown>)).toMatchObject({ status: 404, type: "invalid_request_error", code: "not_found" });
    }
  });

  it("input_items: the input in order; `after` an unknown item is a 404 naming after", async () => {
    const created = await openai().responses.create({
      model: "fake-model",
      input: [
        { role: "user", content: "one" },
        { role: "user", content: "two" },
      ],
    });
    const listed = await openai().responses.inputItems.list(created.id, { order: "asc" });
    expect(listed.data.map((i) => (i.type === "message" ? i.content.map((p) => ("text" in p ? p.text : "")).join("") : i.type))).toEqual(["one", "two"]);
    const err = await refusal(openai().responses.inputItems.list(created.id, { after: "msg_01jf3t8vvaf8s9k0d7k6x1s2y3" }));
    expect(err).toMatchObject({ status: 404, param: "after" });
  });

  it("an upstream 400 before any output reaches the SDK as an APIError with the upstream's status, not retried", async () => {
    ctx.upstream.setBehaviour(upstreamError(400, { message: "context too long for fake", param: "messages", code: "context_length_exceeded" }));
    const err = await refusal(openaiAt(`${ctx.service.url}/v1`, { maxRetries: 2 }).responses.create({ model: "fake-model", input: "too much" }));
    expect(err.status).toBe(400);
    expect(err.message).toContain("context too long for fake");
    expect(err).toMatchObject({ code: "context_length_exceeded", param: "messages" });
    expect(ctx.upstream.requests).toHaveLength(1);
  });
});
