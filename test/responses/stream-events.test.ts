import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import type { MessageRow } from "../../src/db/schema.ts";
import { responseRequestSchema } from "../../src/http/responses/request.ts";
import { responseBaseOf, toResponseObject, type ResponseBase } from "../../src/http/responses/response-object.ts";
import { ResponseEventTranslator, responseEventsFromRow, type ResponseStreamEvent } from "../../src/http/responses/stream-events.ts";
import type { ReplyEvent } from "../../src/streams/reply-events.ts";
import { specIssues, StreamingEvent } from "../support/open-responses.ts";

/**
 * The Responses stream made from a reply's native event log, on hand-written
 * logs: every event conforms to the Open Responses schemas and is numbered
 * 0, 1, 2, …; the same log always gives the same events; and the OpenAI SDK
 * puts the stream together into the response the last event carries.
 */

const SUFFIX = "01jf3t8vvaf8s9k0d7k6x1s2y3";
const REPLY = `msg_${SUFFIX}`;
const RS = `rs_${SUFFIX}`;
const fc = (i: number) => `fc_${SUFFIX}_${i}`;

function baseOf(extra: Record<string, unknown> = {}): ResponseBase {
  const body = responseRequestSchema.parse({ model: "parley-sim-1", input: "hi", ...extra });
  return responseBaseOf(body, { id: `resp_${SUFFIX}`, createdAt: 1_700_000_000, conversationId: null });
}

/** A native log, its ids as Redis gives them (ms-seq), one millisecond apart. */
function nativeLog(...events: [ReplyEvent["event"], unknown][]): ReplyEvent[] {
  return events.map(([event, data], i) => ({ id: `${1_700_000_001_000 + i}-0`, event, data: JSON.stringify(data) }));
}
const created = (id = REPLY): [ReplyEvent["event"], unknown] => ["message.created", { id, object: "message", status: "queued", role: "assistant" }];
const delta = (d: Record<string, unknown>, extra: Record<string, unknown> = {}): [ReplyEvent["event"], unknown] => ["message.delta", { id: REPLY, delta: d, ...extra }];
const reset = (): [ReplyEvent["event"], unknown] => ["message.reset", { id: REPLY, reason: "worker_lost" }];
const end = (status: "completed" | "failed" | "cancelled", fields: Record<string, unknown>): [ReplyEvent["event"], unknown] => [
  `message.${status}`,
  {
    id: REPLY,
    status,
    content: "",
    reasoning: null,
    tool_calls: null,
    finish_reason: status === "completed" ? "stop" : null,
    usage: status === "completed" ? { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } : null,
    error: null,
    completed_at: 1_700_000_002,
    ...fields,
  },
];
const done = (): [ReplyEvent["event"], unknown] => ["done", "[DONE]"];

function translate(log: ReplyEvent[], base = baseOf(), replyId: string | null = REPLY): { events: ResponseStreamEvent[]; finished: boolean } {
  const translator = new ResponseEventTranslator(base, replyId);
  const events = log.flatMap((e) => translator.push(e));
  return { events, finished: translator.finished };
}

/** Every event conforms to the spec, and they are numbered 0, 1, 2, … with no gap. */
function expectWellFormed(events: ResponseStreamEvent[]): void {
  for (const e of events) expect(specIssues(StreamingEvent, e), JSON.stringify(e)).toEqual([]);
  expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
}

const types = (events: ResponseStreamEvent[]) => events.map((e) => e.type);
const deltasOf = (events: ResponseStreamEvent[], type: string) =>
  events.filter((e) => e.type === type).map((e) => (e as { delta: string }).delta).join("");
const last = (events: ResponseStreamEvent[]) => events[events.length - 1]! as Extract<ResponseStreamEvent, { response: unknown }>;

/** What the OpenAI SDK makes of the stream: its final response, or the error it throws. */
async function sdkFinal(events: ResponseStreamEvent[]): Promise<OpenAI.Responses.Response> {
  const body = events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join("");
  const client = new OpenAI({
    apiKey: "test",
    baseURL: "http://parley.invalid/v1",
    maxRetries: 0,
    fetch: async () => new Response(body, { headers: { "content-type": "text/event-stream" } }),
  });
  return client.responses.stream({ model: "parley-sim-1", input: "hi" }).finalResponse();
}

describe("a reply's stream as Responses events", () => {
  const textLog = nativeLog(
    created(`msg_01jf3t8vvaf8s9k0d7k6x1s2aa`),
    created(),
    delta({ content: "Hel" }),
    delta({ content: "lo" }),
    end("completed", { content: "Hello" }),
    done(),
  );

  it("text: the lifecycle, one message item with one output_text part, then the completed response", async () => {
    const { events, finished } = translate(textLog);
    expectWellFormed(events);
    expect(finished).toBe(true);
    expect(types(events)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events[4]).toMatchObject({ item_id: REPLY, output_index: 0, content_index: 0, delta: "Hel", logprobs: [] });
    expect(events[6]).toMatchObject({ text: "Hello" });
    expect(last(events).response).toMatchObject({
      status: "completed",
      completed_at: 1_700_000_002,
      output: [{ id: REPLY, type: "message", status: "completed", role: "assistant", content: [{ type: "output_text", text: "Hello", annotations: [] }] }],
      usage: { input_tokens: 5, output_tokens: 3, total_tokens: 8 },
    });
    const response = await sdkFinal(events);
    expect(response.output_text).toBe("Hello");
    expect(response.status).toBe("completed");
  });

  it("is deterministic: the same log gives the same events, so a replay after N gives exactly the rest", () => {
    const first = translate(textLog).events;
    expect(translate(textLog).events).toEqual(first);
    for (const n of [0, 3, 6]) {
      expect(first.filter((e) => e.sequence_number > n)).toEqual(first.slice(n + 1));
    }
  });

  it("reasoning then text: a reasoning item with reasoning_text, then the message", async () => {
    const { events } = translate(
      nativeLog(created(), delta({ reasoning: "Let me " }), delta({ reasoning: "think." }), delta({ content: "42" }), end("completed", { content: "42", reasoning: "Let me think." }), done()),
    );
    expectWellFormed(events);
    expect(types(events)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events[2]).toMatchObject({ output_index: 0, item: { id: RS, type: "reasoning" } });
    expect(events[6]).toMatchObject({ item_id: RS, text: "Let me think." });
    expect(events[9]).toMatchObject({ output_index: 1, item: { id: REPLY, type: "message" } });
    expect(last(events).response.output.map((i) => i.id)).toEqual([RS, REPLY]);
    const response = await sdkFinal(events);
    expect(response.output_text).toBe("42");
    expect(response.output[0]).toMatchObject({ type: "reasoning", content: [{ type: "reasoning_text", text: "Let me think." }] });
  });

  it("parallel tool calls: one function_call item each, arguments in fragments", async () => {
    const calls = [
      { id: "call_a", type: "function", function: { name: "weather", arguments: '{"city":"Paris"}' } },
      { id: "call_b", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } },
    ];
    const { events } = translate(
      nativeLog(
        created(),
        delta({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "weather", arguments: "" } }] }),
        delta({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
        delta({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
        delta({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "weather", arguments: '{"city":"Oslo"}' } }] }),
        end("completed", { tool_calls: calls, finish_reason: "tool_calls" }),
        done(),
      ),
    );
    expectWellFormed(events);
    expect(types(events)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events[2]).toMatchObject({ output_index: 0, item: { id: fc(0), type: "function_call", call_id: "call_a", name: "weather", arguments: "", status: "in_progress" } });
    expect(events[5]).toMatchObject({ item_id: fc(0), arguments: '{"city":"Paris"}' });
    expect(events[7]).toMatchObject({ output_index: 1, item: { id: fc(1), call_id: "call_b" } });
    expect(last(events).response.output).toEqual([
      { id: fc(0), type: "function_call", call_id: "call_a", name: "weather", arguments: '{"city":"Paris"}', status: "completed" },
      { id: fc(1), type: "function_call", call_id: "call_b", name: "weather", arguments: '{"city":"Oslo"}', status: "completed" },
    ]);
    const response = await sdkFinal(events);
    expect(response.output.map((i) => (i.type === "function_call" ? i.call_id : i.type))).toEqual(["call_a", "call_b"]);
  });

  it("a call's item waits for its id and name, then sends the arguments it held", () => {
    const { events } = translate(
      nativeLog(
        created(),
        delta({ tool_calls: [{ index: 0, function: { arguments: '{"q":' } }] }),
        delta({ tool_calls: [{ index: 0, id: "call_1", function: { name: "search", arguments: '"x"}' } }] }),
        end("completed", { tool_calls: [{ id: "call_1", type: "function", function: { name: "search", arguments: '{"q":"x"}' } }], finish_reason: "tool_calls" }),
      ),
    );
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "response.output_item.added")).toHaveLength(1);
    expect(deltasOf(events, "response.function_call_arguments.delta")).toBe('{"q":"x"}');
  });

  it("failed before any output: created, in progress, failed with the error", async () => {
    const { events } = translate(
      nativeLog(created(), end("failed", { error: { message: "The upstream is down.", type: "server_error", code: "upstream_error" } }), done()),
    );
    expectWellFormed(events);
    expect(types(events)).toEqual(["response.created", "response.in_progress", "response.failed"]);
    expect(last(events).response).toMatchObject({ status: "failed", error: { code: "upstream_error", message: "The upstream is down." }, output: [] });
    await expect(sdkFinal(events)).resolves.toMatchObject({ status: "failed" });
  });

  it("failed after output: the partial item ends incomplete, and the failed response keeps it", () => {
    const { events } = translate(
      nativeLog(
        created(),
        delta({ content: "Part" }),
        end("failed", { content: "Part", error: { message: "Connection lost.", type: "server_error", code: "upstream_error" } }),
      ),
    );
    expectWellFormed(events);
    expect(types(events).slice(-4)).toEqual(["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.failed"]);
    expect(events[events.length - 2]).toMatchObject({ item: { id: REPLY, status: "incomplete" } });
    expect(last(events).response).toMatchObject({ status: "failed", output: [{ id: REPLY, status: "incomplete", content: [{ text: "Part" }] }] });
  });

  it("cancelled: the partial output kept, ended as an incomplete event whose response says cancelled", async () => {
    const { events } = translate(nativeLog(created(), delta({ content: "Par" }), end("cancelled", { content: "Par" }), done()));
    expectWellFormed(events);
    expect(last(events).type).toBe("response.incomplete");
    expect(last(events).response).toMatchObject({ status: "cancelled", output: [{ content: [{ text: "Par" }] }], error: null });
    await expect(sdkFinal(events)).resolves.toMatchObject({ status: "cancelled" });
  });

  it("cut by length: incomplete, for max_output_tokens", async () => {
    const { events } = translate(nativeLog(created(), delta({ content: "Once upon" }), end("completed", { content: "Once upon", finish_reason: "length" })));
    expectWellFormed(events);
    expect(last(events).type).toBe("response.incomplete");
    expect(last(events).response).toMatchObject({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } });
    expect(events[events.length - 2]).toMatchObject({ type: "response.output_item.done", item: { status: "incomplete" } });
    const response = await sdkFinal(events);
    expect(response.incomplete_details).toEqual({ reason: "max_output_tokens" });
  });

  it("a restart that repeats what was sent sends nothing twice, then goes on", async () => {
    const { events, finished } = translate(
      nativeLog(
        created(),
        delta({ reasoning: "Hmm." }),
        delta({ content: "Hello, w" }),
        reset(),
        delta({ reasoning: "Hmm." }),
        delta({ content: "Hello" }),
        delta({ content: ", world" }),
        delta({ content: "!" }),
        end("completed", { content: "Hello, world!", reasoning: "Hmm." }),
        done(),
      ),
    );
    expectWellFormed(events);
    expect(finished).toBe(true);
    expect(deltasOf(events, "response.output_text.delta")).toBe("Hello, world!");
    expect(deltasOf(events, "response.reasoning_text.delta")).toBe("Hmm.");
    expect(events.filter((e) => e.type === "response.output_item.added")).toHaveLength(2);
    expect((await sdkFinal(events)).output_text).toBe("Hello, world!");
  });

  it("a restart before anything was sent is simply the reply", () => {
    const { events } = translate(nativeLog(created(), reset(), delta({ content: "Hi" }), end("completed", { content: "Hi" })));
    expectWellFormed(events);
    expect(deltasOf(events, "response.output_text.delta")).toBe("Hi");
  });

  it("a restart that writes something else: an error event (reply_restarted), and the translation stops", () => {
    const log = nativeLog(created(), delta({ content: "Hello" }), reset(), delta({ content: "Goodbye" }), end("completed", { content: "Goodbye" }), done());
    const translator = new ResponseEventTranslator(baseOf(), REPLY);
    const events = log.flatMap((e) => translator.push(e));
    expectWellFormed(events);
    expect(last(events as never).type).toBe("error");
    expect(last(events as never)).toMatchObject({ code: "reply_restarted", error: { code: "reply_restarted", type: "server_error" } });
    expect(translator.finished).toBe(true);
    expect(events.filter((e) => e.type === "error")).toHaveLength(1);
    expect(translator.push(log[4]!)).toEqual([]);
  });

  it("a restart whose reasoning ends short of what was sent is refused at its end", () => {
    const { events } = translate(
      nativeLog(created(), delta({ reasoning: "abc" }), delta({ content: "x" }), reset(), delta({ reasoning: "ab" }), delta({ content: "x" }), end("completed", { content: "x", reasoning: "ab" })),
    );
    expectWellFormed(events);
    expect(last(events as never).type).toBe("error");
  });

  it("background: created and queued, in progress once the reply starts", () => {
    const { events } = translate(nativeLog(created(), delta({ content: "Hi" }), end("completed", { content: "Hi" })), baseOf({ background: true }));
    expectWellFormed(events);
    expect(types(events).slice(0, 4)).toEqual(["response.created", "response.queued", "response.in_progress", "response.output_item.added"]);
    expect(events[0]).toMatchObject({ response: { status: "queued", background: true } });
  });

  it("sends what the end holds beyond the deltas (a reply read from its row)", () => {
    const { events } = translate(nativeLog(created(), delta({ content: "Hel" }), end("completed", { content: "Hello" })));
    expectWellFormed(events);
    expect(deltasOf(events, "response.output_text.delta")).toBe("Hello");
  });

  it("a stateless completion: the first message.created is the reply, items named after it", () => {
    const id = `chatcmpl_${SUFFIX}`;
    const log = nativeLog(["message.created", { id, status: "queued", model: "m" }], ["message.delta", { delta: { content: "Yo" } }], [
      "message.completed",
      { id, status: "completed", content: "Yo", finish_reason: "stop", usage: null, error: null },
    ]);
    const { events } = translate(log, baseOf({ store: false }), null);
    expectWellFormed(events);
    expect(events.find((e) => e.type === "response.output_item.added")).toMatchObject({ item: { id: REPLY } });
    // No completed_at in a stateless end: taken from the end event's stream id, so a replay gives the same.
    expect(last(events).response.completed_at).toBe(Math.floor(1_700_000_001_002 / 1000));
  });

  it("includes logprobs on the text deltas and the done part when asked", () => {
    const lp = { token: "Hi", logprob: -0.5, bytes: [72, 105], top_logprobs: [] };
    const { events } = translate(
      nativeLog(created(), delta({ content: "Hi", logprobs: [{ content: [lp] }] }), end("completed", { content: "Hi", logprobs: { content: [lp] } })),
      baseOf({ include: ["message.output_text.logprobs"] }),
    );
    expectWellFormed(events);
    expect(events.find((e) => e.type === "response.output_text.delta")).toMatchObject({ logprobs: [lp] });
    expect(events.find((e) => e.type === "response.content_part.done")).toMatchObject({ part: { logprobs: [lp] } });
    expect(last(events).response.output[0]).toMatchObject({ content: [{ logprobs: [lp] }] });
  });
});

describe("reasoning summaries (a request with reasoning.summary)", () => {
  const summarized = (summary = "auto") => baseOf({ reasoning: { summary } });
  const summaryTypes = [
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
  ];
  const summaryEvents = (events: ResponseStreamEvent[]) => events.filter((e) => summaryTypes.includes(e.type));
  const fragments = (events: ResponseStreamEvent[], type: string) => events.filter((e) => e.type === type).map((e) => (e as { delta: string }).delta);
  const thinkingLog = nativeLog(
    created(),
    delta({ reasoning: "Let me " }),
    delta({ reasoning: "think." }),
    delta({ content: "42" }),
    end("completed", { content: "42", reasoning: "Let me think." }),
    done(),
  );

  it("the reasoning item also streams its reasoning as its one summary part, fragment for fragment", async () => {
    const { events } = translate(thinkingLog, summarized());
    expectWellFormed(events);
    expect(types(events)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
      "response.reasoning_summary_part.added",
      "response.reasoning_text.delta",
      "response.reasoning_summary_text.delta",
      "response.reasoning_text.delta",
      "response.reasoning_summary_text.delta",
      "response.reasoning_text.done",
      "response.content_part.done",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    const at = { item_id: RS, output_index: 0, summary_index: 0 };
    expect(events[2]).toMatchObject({ item: { id: RS, type: "reasoning", summary: [], content: [] } });
    expect(events[4]).toEqual({ type: "response.reasoning_summary_part.added", ...at, part: { type: "summary_text", text: "" }, sequence_number: 4 });
    expect(fragments(events, "response.reasoning_summary_text.delta")).toEqual(["Let me ", "think."]);
    expect(fragments(events, "response.reasoning_summary_text.delta")).toEqual(fragments(events, "response.reasoning_text.delta"));
    expect(events[11]).toEqual({ type: "response.reasoning_summary_text.done", ...at, text: "Let me think.", sequence_number: 11 });
    // Completed normally: no `status` (the OpenAI SDK's type has it only for a part cut short).
    expect(events[12]).toEqual({ type: "response.reasoning_summary_part.done", ...at, part: { type: "summary_text", text: "Let me think." }, sequence_number: 12 });
    const item = { id: RS, type: "reasoning", summary: [{ type: "summary_text", text: "Let me think." }], content: [{ type: "reasoning_text", text: "Let me think." }] };
    expect(events[13]).toMatchObject({ type: "response.output_item.done", item });
    expect(last(events).response.reasoning).toEqual({ effort: null, summary: "auto" });
    expect(last(events).response.output[0]).toEqual(item);
    const response = await sdkFinal(events);
    expect(response.output[0]).toEqual(item);
    expect(response.output_text).toBe("42");
  });

  it.each(["concise", "detailed"])("%s: the same whole reasoning (a chat-completions upstream has no shorter summary)", (level) => {
    const { events } = translate(thinkingLog, summarized(level));
    expectWellFormed(events);
    expect(last(events).response.output[0]).toMatchObject({ summary: [{ type: "summary_text", text: "Let me think." }] });
  });

  it.each([
    ["no reasoning field", {}],
    ["reasoning without summary", { reasoning: { effort: "low" } }],
    ["summary: null", { reasoning: { effort: "low", summary: null } }],
  ])("without a summary asked (%s) nothing changes: no summary events, empty summaries", (_, extra) => {
    const { events } = translate(thinkingLog, baseOf(extra));
    expectWellFormed(events);
    expect(summaryEvents(events)).toEqual([]);
    expect(events.find((e) => e.type === "response.output_item.done")).toMatchObject({ item: { id: RS, summary: [] } });
    expect(last(events).response.output[0]).toMatchObject({ id: RS, summary: [] });
  });

  it("no reasoning, no summary events", () => {
    const { events } = translate(nativeLog(created(), delta({ content: "Hi" }), end("completed", { content: "Hi" })), summarized());
    expectWellFormed(events);
    expect(summaryEvents(events)).toEqual([]);
  });

  it("a restart that repeats the reasoning sends no summary twice; the same log gives the same events", async () => {
    const log = nativeLog(
      created(),
      delta({ reasoning: "Hm" }),
      reset(),
      delta({ reasoning: "H" }),
      delta({ reasoning: "mm." }),
      delta({ content: "Yes." }),
      end("completed", { content: "Yes.", reasoning: "Hmm." }),
      done(),
    );
    const { events, finished } = translate(log, summarized());
    expectWellFormed(events);
    expect(finished).toBe(true);
    expect(fragments(events, "response.reasoning_text.delta")).toEqual(["Hm", "m."]);
    expect(fragments(events, "response.reasoning_summary_text.delta")).toEqual(["Hm", "m."]);
    expect(events.filter((e) => e.type === "response.reasoning_summary_part.added")).toHaveLength(1);
    expect(translate(log, summarized()).events).toEqual(events);
    for (const n of [3, 6, 10]) expect(translate(log, summarized()).events.filter((e) => e.sequence_number > n)).toEqual(events.slice(n + 1));
    expect((await sdkFinal(events)).output[0]).toMatchObject({ summary: [{ type: "summary_text", text: "Hmm." }] });
  });

  it("reasoning cut short (cancelled while thinking): its summary part ends with status incomplete", () => {
    const { events } = translate(nativeLog(created(), delta({ reasoning: "Wait" }), end("cancelled", { reasoning: "Wait" })), summarized());
    expectWellFormed(events);
    expect(events.find((e) => e.type === "response.reasoning_summary_part.done")).toMatchObject({ status: "incomplete", part: { text: "Wait" } });
    expect(last(events).response).toMatchObject({ status: "cancelled", output: [{ id: RS, summary: [{ type: "summary_text", text: "Wait" }] }] });
  });

  it("sends the summary of reasoning only the end brought (a follower that read the row)", () => {
    const { events } = translate(nativeLog(created(), delta({ reasoning: "Abo" }), end("completed", { content: "", reasoning: "About it." })), summarized());
    expectWellFormed(events);
    expect(fragments(events, "response.reasoning_summary_text.delta")).toEqual(["Abo", "ut it."]);
  });

  it("the Response object: reasoning items carry their summary when asked, and only then", () => {
    const reasoning = { id: RS, type: "reasoning" as const, summary: [], content: [{ type: "reasoning_text" as const, text: "Because." }] };
    const message = { id: REPLY, type: "message" as const, status: "completed" as const, role: "assistant" as const, content: [] };
    const outcome = { status: "completed" as const, output: [reasoning, message], usage: null, error: null, finishReason: "stop", completedAt: 1 };
    expect(toResponseObject(summarized(), outcome).output).toEqual([{ ...reasoning, summary: [{ type: "summary_text", text: "Because." }] }, message]);
    expect(toResponseObject(baseOf(), outcome).output).toEqual([reasoning, message]);
  });
});

describe("a reply whose event log expired", () => {
  const row = {
    id: REPLY,
    role: "assistant",
    content: "Done.",
    parts: null,
    name: null,
    reasoning: "Thought.",
    toolCalls: [{ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } }],
    toolCallId: null,
    logprobs: null,
    status: "completed",
    model: "parley-sim-1",
    finishReason: "tool_calls",
    usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
    error: null,
    metadata: {},
    conversationId: `conv_${SUFFIX}`,
    seq: 3,
    tokens: 5,
    contextMessages: 2,
    contextTokens: 9,
    createdAt: new Date(1_700_000_000_000),
    completedAt: new Date(1_700_000_004_000),
  } as unknown as MessageRow;

  it("is told from its row: one delta per item, the same kinds of events, the same response", async () => {
    const events = responseEventsFromRow(baseOf(), row);
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "response.output_item.added").map((e) => (e as { item: { id: string } }).item.id)).toEqual([RS, REPLY, fc(0)]);
    expect(events.filter((e) => e.type.endsWith(".delta"))).toHaveLength(3);
    expect(last(events).response).toMatchObject({ status: "completed", completed_at: 1_700_000_004, usage: { total_tokens: 3 } });
    expect(responseEventsFromRow(baseOf(), row)).toEqual(events);
    const response = await sdkFinal(events);
    expect(response.output.map((i) => i.type)).toEqual(["reasoning", "message", "function_call"]);
  });

  it("with reasoning.summary, its reasoning is also told as its summary", async () => {
    const base = baseOf({ reasoning: { summary: "auto" } });
    const events = responseEventsFromRow(base, row);
    expectWellFormed(events);
    expect(events.filter((e) => e.type === "response.reasoning_summary_text.delta")).toMatchObject([{ item_id: RS, delta: "Thought." }]);
    expect(responseEventsFromRow(base, row)).toEqual(events);
    expect((await sdkFinal(events)).output[0]).toMatchObject({ id: RS, summary: [{ type: "summary_text", text: "Thought." }] });
  });
});
