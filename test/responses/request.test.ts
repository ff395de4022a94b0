import { describe, expect, it } from "vitest";
import type { MessageRow } from "../../src/db/schema.ts";
import type { CompletionEnd } from "../../src/domain/stateless-completions.ts";
import { validationErrorBody } from "../../src/http/errors.ts";
import { conversationIdOf, responseRequestSchema, toChatParams, type ResponseRequest } from "../../src/http/responses/request.ts";
import {
  responseBaseOf,
  responseObjectSchema,
  responseOutcomeOfCompletion,
  responseOutcomeOfReply,
  toResponseObject,
  type ResponseOutcome,
} from "../../src/http/responses/response-object.ts";
import { ResponseResource, specIssues } from "../support/open-responses.ts";

const SUFFIX = "01jf3t8vvaf8s9k0d7k6x1s2y3";

/** A body as the client wrote it: parsed from JSON text, so its key order is the client's. */
function given(json: string): { body: ResponseRequest; raw: unknown } {
  const raw = JSON.parse(json) as unknown;
  return { body: responseRequestSchema.parse(raw), raw };
}

function refusal(body: Record<string, unknown>): { param: string | null; message: string } {
  const result = responseRequestSchema.safeParse({ model: "m", input: "hi", ...body });
  if (result.success) throw new Error(`accepted: ${JSON.stringify(result.data)}`);
  const { param, message } = validationErrorBody(result.error, "json").error;
  return { param, message };
}

describe("the create body", () => {
  it("takes every field the spec and the SDK send", () => {
    const { body } = given(
      JSON.stringify({
        model: "parley-sim-1",
        input: [{ role: "user", content: "Hi" }],
        instructions: "Be brief.",
        conversation: { id: "conv_1" },
        store: true,
        background: true,
        stream: true,
        stream_options: { include_obfuscation: false },
        tools: [{ type: "function", name: "get_weather", description: "Weather", parameters: { type: "object" }, strict: true }],
        tool_choice: { type: "function", name: "get_weather" },
        parallel_tool_calls: false,
        max_output_tokens: 256,
        temperature: 0.2,
        top_p: 0.9,
        presence_penalty: 0,
        frequency_penalty: 0,
        top_logprobs: 2,
        truncation: "auto",
        text: { format: { type: "json_object" }, verbosity: "low" },
        reasoning: { effort: "low", summary: "auto" },
        metadata: { app: "test" },
        include: ["message.output_text.logprobs", "reasoning.encrypted_content"],
        user: "u1",
        safety_identifier: "s1",
        prompt_cache_key: "k1",
        service_tier: "auto",
      }),
    );
    expect(conversationIdOf(body)).toBe("conv_1");
    expect(conversationIdOf({ conversation: "conv_2" })).toBe("conv_2");
    expect(conversationIdOf({})).toBeNull();
  });

  const cases: { name: string; body: Record<string, unknown>; param: string; says: RegExp }[] = [
    { name: "conversation with previous_response_id", body: { conversation: "conv_1", previous_response_id: "resp_1" }, param: "previous_response_id", says: /conversation/ },
    { name: "background without store", body: { background: true, store: false }, param: "background", says: /stored/ },
    { name: "a hosted tool", body: { tools: [{ type: "web_search" }] }, param: "tools.0.type", says: /only tools of type `function`/ },
    { name: "a badly named function", body: { tools: [{ type: "function", name: "get weather" }] }, param: "tools.0.name", says: /letters/ },
    { name: "an allowed_tools tool choice", body: { tool_choice: { type: "allowed_tools", tools: [], mode: "auto" } }, param: "tool_choice", says: /none, auto, required/ },
    { name: "a tool choice naming no tool", body: { tools: [], tool_choice: { type: "function", name: "nope" } }, param: "tool_choice.name", says: /nope/ },
    { name: "a flex service tier", body: { service_tier: "flex" }, param: "service_tier", says: /auto.*default/ },
    { name: "max_tool_calls", body: { max_tool_calls: 3 }, param: "max_tool_calls", says: /not supported/ },
    { name: "a reusable prompt", body: { prompt: { id: "pmpt_1" } }, param: "prompt", says: /instructions/ },
    { name: "an unknown field", body: { frobnicate: true }, param: null as unknown as string, says: /frobnicate/ },
    { name: "an include Parley cannot answer", body: { include: ["file_search_call.results"] }, param: "include.0", says: /message.output_text.logprobs/ },
    { name: "a text format of another type", body: { text: { format: { type: "grammar" } } }, param: "text.format.type", says: /json_schema/ },
    { name: "a json_schema format without a schema", body: { text: { format: { type: "json_schema", name: "x" } } }, param: "text.format.schema", says: /JSON Schema/ },
    { name: "max_output_tokens under the spec's 16", body: { max_output_tokens: 4 }, param: "max_output_tokens", says: /16/ },
    { name: "an input item of an unknown type", body: { input: [{ type: "mcp_call" }] }, param: "input.0.type", says: /item of type/ },
  ];
  for (const c of cases) {
    it(`refuses ${c.name}, naming the field`, () => {
      const { param, message } = refusal(c.body);
      if (c.param !== null) expect(param).toBe(c.param);
      expect(message).toMatch(c.says);
    });
  }
});

describe("toChatParams", () => {
  it("translates tools, tool choice and sampling into chat-completions params", () => {
    const { body, raw } = given(
      JSON.stringify({
        model: "m",
        input: "hi",
        tools: [{ type: "function", name: "f", parameters: { type: "object", properties: { b: {}, a: {} } }, strict: false }],
        tool_choice: { type: "function", name: "f" },
        parallel_tool_calls: true,
        max_output_tokens: 100,
        temperature: 0.5,
        top_p: 0.8,
        reasoning: { effort: "high" },
        top_logprobs: 3,
        instructions: "Be brief.",
        truncation: "auto",
      }),
    );
    expect(toChatParams(body, raw)).toEqual({
      tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { b: {}, a: {} } }, strict: false } }],
      tool_choice: { type: "function", function: { name: "f" } },
      parallel_tool_calls: true,
      max_tokens: 100,
      temperature: 0.5,
      top_p: 0.8,
      reasoning_effort: "high",
      logprobs: true,
      top_logprobs: 3,
      instructions: "Be brief.",
      truncation: "auto",
    });
    expect(toChatParams(given(JSON.stringify({ model: "m", input: "x", tool_choice: "required" })).body, {})).toEqual({ tool_choice: "required" });
  });

  it("keeps a json schema's keys, and the format's, in the order the client wrote them", () => {
    const { body, raw } = given(
      '{"model":"m","input":"hi","text":{"format":{"strict":true,"schema":{"type":"object","required":["z","a"],"properties":{"z":{"type":"string"},"a":{"type":"number"}}},"type":"json_schema","name":"answer"}}}',
    );
    const params = toChatParams(body, raw);
    expect(JSON.stringify(params.response_format)).toBe(
      '{"type":"json_schema","json_schema":{"strict":true,"schema":{"type":"object","required":["z","a"],"properties":{"z":{"type":"string"},"a":{"type":"number"}}},"name":"answer"}}',
    );
  });

  it("keeps a tool's parameters in the client's key order", () => {
    const { body, raw } = given('{"model":"m","input":"hi","tools":[{"parameters":{"required":["q"],"type":"object"},"name":"search","type":"function"}]}');
    expect(JSON.stringify(toChatParams(body, raw).tools)).toBe('[{"type":"function","function":{"name":"search","parameters":{"required":["q"],"type":"object"}}}]');
  });

  it("asks for logprobs when the include asks for them", () => {
    const { body, raw } = given('{"model":"m","input":"hi","include":["message.output_text.logprobs"]}');
    expect(toChatParams(body, raw)).toEqual({ logprobs: true });
  });
});

describe("the Response object", () => {
  const { body, raw } = given(
    JSON.stringify({
      model: "parley-sim-1",
      input: "hi",
      instructions: "Be brief.",
      tools: [{ type: "function", name: "f", parameters: { type: "object" } }],
      text: { format: { type: "json_schema", name: "answer", schema: { type: "object" }, strict: true } },
      metadata: { app: "t" },
    }),
  );
  const base = responseBaseOf(body, { id: `resp_${SUFFIX}`, createdAt: 1_700_000_000, conversationId: `conv_${SUFFIX}` }, raw);

  const row = (extra: Partial<MessageRow>): MessageRow =>
    ({
      id: `msg_${SUFFIX}`,
      tenantId: "t",
      conversationId: `conv_${SUFFIX}`,
      seq: 2,
      role: "assistant",
      content: "",
      parts: null,
      name: null,
      toolCalls: null,
      toolCallId: null,
      reasoning: null,
      logprobs: null,
      status: "completed",
      model: "parley-sim-1",
      finishReason: "stop",
      usage: null,
      error: null,
      metadata: {},
      params: null,
      tokens: 0,
      historyTokens: 0,
      contextMessages: null,
      contextTokens: null,
      attempt: 1,
      createdAt: new Date(1_700_000_000_000),
      completedAt: new Date(1_700_000_005_000),
      ...extra,
    }) as MessageRow;

  const outcomes: [string, ResponseOutcome, Record<string, unknown>][] = [
    [
      "completed, with usage and its details",
      responseOutcomeOfReply(
        row({
          content: "Hello",
          reasoning: "Think",
          usage: {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            prompt_tokens_details: { cached_tokens: 4 },
            completion_tokens_details: { reasoning_tokens: 2 },
          } as MessageRow["usage"],
        }),
      ),
      {
        status: "completed",
        completed_at: 1_700_000_005,
        usage: { input_tokens: 10, input_tokens_details: { cached_tokens: 4 }, output_tokens: 5, output_tokens_details: { reasoning_tokens: 2 }, total_tokens: 15 },
        error: null,
        incomplete_details: null,
      },
    ],
    ["queued", responseOutcomeOfReply(row({ status: "queued", finishReason: null, completedAt: null })), { status: "queued", completed_at: null, usage: null }],
    ["in progress", responseOutcomeOfReply(row({ status: "in_progress", content: "Hel", finishReason: null, completedAt: null })), { status: "in_progress" }],
    [
      "cut by length: incomplete, for max_output_tokens",
      responseOutcomeOfReply(row({ content: "Hel", finishReason: "length" })),
      { status: "incomplete", incomplete_details: { reason: "max_output_tokens" }, completed_at: null },
    ],
    ["filtered: incomplete, for content_filter", responseOutcomeOfReply(row({ finishReason: "content_filter" })), { status: "incomplete", incomplete_details: { reason: "content_filter" } }],
    [
      "failed, with its error",
      responseOutcomeOfReply(row({ status: "failed", finishReason: null, error: { message: "Upstream down", type: "server_error", code: "upstream_error" } })),
      { status: "failed", error: { code: "upstream_error", message: "Upstream down" } },
    ],
    ["cancelled", responseOutcomeOfReply(row({ status: "cancelled", content: "Part", finishReason: null })), { status: "cancelled", error: null }],
  ];
  for (const [name, outcome, expected] of outcomes) {
    it(`${name}: conforms to the spec and the schema`, () => {
      const response = toResponseObject(base, outcome);
      expect(response).toMatchObject(expected);
      expect(specIssues(ResponseResource, response)).toEqual([]);
      expect(responseObjectSchema.safeParse(response).success).toBe(true);
    });
  }

  it("echoes what the request fixed, with the API's defaults for what it left out", () => {
    const response = toResponseObject(base, outcomes[0]![1]);
    expect(response).toMatchObject({
      id: `resp_${SUFFIX}`,
      object: "response",
      created_at: 1_700_000_000,
      model: "parley-sim-1",
      instructions: "Be brief.",
      tools: [{ type: "function", name: "f", description: null, parameters: { type: "object" }, strict: null }],
      tool_choice: "auto",
      parallel_tool_calls: true,
      temperature: 1,
      top_p: 1,
      truncation: "disabled",
      text: { format: { type: "json_schema", name: "answer", description: null, schema: { type: "object" }, strict: true } },
      conversation: { id: `conv_${SUFFIX}` },
      store: true,
      background: false,
      metadata: { app: "t" },
      output: [
        { id: `rs_${SUFFIX}`, type: "reasoning" },
        { id: `msg_${SUFFIX}`, type: "message", status: "completed" },
      ],
    });
    expect(response).not.toHaveProperty("include");
  });

  it("a stateless completion's end gives the same kind of response, its items named after the completion", () => {
    const end: CompletionEnd = {
      id: `chatcmpl_${SUFFIX}`,
      status: "completed",
      content: "",
      tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }],
      finish_reason: "tool_calls",
      usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      error: null,
    };
    const response = toResponseObject({ ...base, store: false, conversation: null }, responseOutcomeOfCompletion(end, { completedAt: 1_700_000_009 }));
    expect(response.output).toEqual([{ id: `fc_${SUFFIX}_0`, type: "function_call", call_id: "call_1", name: "f", arguments: "{}", status: "completed" }]);
    expect(response).toMatchObject({ status: "completed", completed_at: 1_700_000_009, store: false, usage: { input_tokens: 3, output_tokens: 4, total_tokens: 7 } });
    expect(specIssues(ResponseResource, response)).toEqual([]);
  });
});
