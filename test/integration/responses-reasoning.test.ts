import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";
import { describe, expect, it } from "vitest";
import { TEST_API_KEY } from "../support/keys.ts";
import { openaiAt } from "../support/openai-clients.ts";
import { ResponseResource, specIssues, StreamingEvent } from "../support/open-responses.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * Reasoning the AI SDK can see: its default OpenAI provider reads only reasoning summaries, so a request
 * asking for them (`reasoning.summary`) gets the upstream's reasoning as the reasoning item's summary too,
 * streamed and not. Against Parley's /v1/responses and a fake chat-completions upstream that reasons.
 */

const ctx = useServiceWithFakeUpstream();
const provider = () => createOpenAI({ baseURL: `${ctx.service.url}/v1`, apiKey: TEST_API_KEY });
const openai = () => openaiAt(`${ctx.service.url}/v1`);
const thinking = ["Let me ", "think."];
const reasons = () => ctx.upstream.setBehaviour({ kind: "ok", reasoning: thinking, text: "Forty-two." });
/**
 * The AI SDK sends `reasoning` only for models it knows reason (o-series, gpt-5…): any other model name,
 * as Parley's usually are, needs `forceReasoning` for `reasoningSummary` to reach the request.
 */
const askSummary = { openai: { reasoningSummary: "auto", forceReasoning: true } };
const summaryOf = (text: string) => [{ type: "summary_text", text }];

describe("reasoning summaries on /v1/responses", () => {
  it("AI SDK generateText: the result has the upstream's reasoning", async () => {
    reasons();
    const result = await generateText({
      model: provider()("fake-model"),
      prompt: "What is the answer?",
      providerOptions: askSummary,
      maxRetries: 0,
      include: { requestBody: true, responseBody: true },
    });
    expect(result.reasoningText).toBe("Let me think.");
    expect(result.text).toBe("Forty-two.");
    expect(result.request.body).toMatchObject({ reasoning: { summary: "auto" } });
    expect(specIssues(ResponseResource, result.response.body)).toEqual([]);
    expect((result.response.body as { output: unknown[] }).output[0]).toMatchObject({ type: "reasoning", summary: summaryOf("Let me think.") });
  });

  it("AI SDK streamText: the reasoning arrives in the upstream's fragments, and every raw event conforms", async () => {
    reasons();
    const result = streamText({ model: provider()("fake-model"), prompt: "Think aloud.", providerOptions: askSummary, includeRawChunks: true, maxRetries: 0 });
    const deltas: string[] = [];
    const raw: { type: string; sequence_number: number }[] = [];
    for await (const part of result.fullStream) {
      if (part.type === "reasoning-delta") deltas.push(part.text);
      if (part.type === "raw") raw.push(part.rawValue as { type: string; sequence_number: number });
      if (part.type === "error") throw part.error;
    }
    expect(deltas).toEqual(thinking);
    expect(await result.reasoningText).toBe("Let me think.");
    expect(await result.text).toBe("Forty-two.");
    for (const e of raw) expect({ type: e.type, issues: specIssues(StreamingEvent, e) }).toEqual({ type: e.type, issues: [] });
    expect(raw.map((e) => e.sequence_number)).toEqual(raw.map((_, i) => i));
    expect(raw.filter((e) => e.type.startsWith("response.reasoning_summary")).map((e) => e.type)).toEqual([
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
    ]);
  });

  it("AI SDK without reasoningSummary: no summary, so the SDK shows no reasoning (why the option matters)", async () => {
    reasons();
    const result = await generateText({ model: provider()("fake-model"), prompt: "Quietly.", maxRetries: 0, include: { responseBody: true } });
    expect(result.reasoningText ?? "").toBe("");
    expect((result.response.body as { output: unknown[] }).output[0]).toMatchObject({ type: "reasoning", summary: [] });
  });

  it("openai client: output[0].summary has the reasoning when asked, created, retrieved and streamed", async () => {
    reasons();
    const item = { type: "reasoning", summary: summaryOf("Let me think."), content: [{ type: "reasoning_text", text: "Let me think." }] };
    const created = await openai().responses.create({ model: "fake-model", input: "Why?", reasoning: { summary: "auto" } });
    expect(specIssues(ResponseResource, created)).toEqual([]);
    expect(created.reasoning).toEqual({ effort: null, summary: "auto" });
    expect(created.output[0]).toMatchObject(item);
    expect(created.output_text).toBe("Forty-two.");
    expect((await openai().responses.retrieve(created.id)).output[0]).toEqual(created.output[0]);

    const streamed = await openai().responses.stream({ model: "fake-model", input: "Why?", reasoning: { summary: "detailed" } }).finalResponse();
    expect(streamed.output[0]).toMatchObject(item);
    // Replayed from its start, the stream tells the summary again, numbered the same.
    const replay: { type: string; sequence_number: number }[] = [];
    for await (const e of await openai().responses.retrieve(streamed.id, { stream: true })) replay.push(e);
    expect(replay.filter((e) => e.type === "response.reasoning_summary_text.delta")).toHaveLength(2);
    expect(replay.map((e) => e.sequence_number)).toEqual(replay.map((_, i) => i));
  });

  it.each([
    ["no reasoning", {}],
    ["reasoning without summary", { reasoning: { effort: "low" as const } }],
  ])("openai client without reasoning.summary (%s): the summary stays empty, the reasoning is its content", async (_, extra) => {
    reasons();
    const created = await openai().responses.create({ model: "fake-model", input: "Why?", ...extra });
    expect(created.output[0]).toMatchObject({ type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: "Let me think." }] });
    const events: { type: string }[] = [];
    for await (const e of await openai().responses.create({ model: "fake-model", input: "Why?", stream: true, ...extra })) events.push(e);
    expect(events.filter((e) => e.type.startsWith("response.reasoning_summary"))).toEqual([]);
    expect(events.filter((e) => e.type === "response.reasoning_text.delta")).toHaveLength(2);
  });
});
