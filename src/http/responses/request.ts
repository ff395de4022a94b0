import { z } from "@hono/zod-openapi";
import { metadataSchema, storableText } from "../../domain/resources.ts";
import { inputItemSchema, LOGPROBS_INCLUDE } from "./items.ts";

/**
 * The body of `POST /v1/responses`, as the OpenAI SDK and the Open Responses
 * specification send it, and its translation into the chat-completions
 * params a turn sends upstream. Whatever Parley cannot honour is refused by
 * name (a 400 naming the field), never dropped.
 */

const FUNCTION_NAME = /^[a-zA-Z0-9_-]{1,64}$/;

export const functionToolSchema = z
  .object({
    type: z.literal("function"),
    name: z.string().regex(FUNCTION_NAME, "must be 1–64 letters, digits, underscores or dashes"),
    description: storableText().nullish(),
    parameters: z.record(z.string(), z.unknown(), { error: "must be a JSON Schema object" }).nullish(),
    strict: z.boolean().nullish(),
  })
  .openapi("FunctionToolParam");
export type FunctionToolParam = z.infer<typeof functionToolSchema>;

const HOSTED_TOOL =
  "only tools of type `function` are supported: Parley serves chat-completions upstreams, which run no hosted tools (web search, file search, code interpreter, …)";

/** A tool: a function; any other type is refused with the reason (a discriminator no option has). */
const toolSchema = z.discriminatedUnion("type", [functionToolSchema], {
  error: (issue) => (issue.code === "invalid_union" ? HOSTED_TOOL : undefined),
});

export const toolChoiceSchema = z
  .union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string().min(1) })], {
    error: "must be none, auto, required or {type: function, name}",
  })
  .openapi("ToolChoiceParam");
export type ToolChoice = z.infer<typeof toolChoiceSchema>;

const jsonSchemaFormat = z.object({
  type: z.literal("json_schema"),
  name: z.string().regex(FUNCTION_NAME, "must be 1–64 letters, digits, underscores or dashes"),
  schema: z.record(z.string(), z.unknown(), { error: "must be a JSON Schema object" }),
  description: storableText().nullish(),
  strict: z.boolean().nullish(),
});
export const textFormatSchema = z
  .discriminatedUnion("type", [z.object({ type: z.literal("text") }), z.object({ type: z.literal("json_object") }), jsonSchemaFormat], {
    error: (issue) => (issue.code === "invalid_union" ? "must be a format of type text, json_object or json_schema" : undefined),
  })
  .openapi("TextFormatParam");
export type TextFormat = z.infer<typeof textFormatSchema>;

export const reasoningEfforts = ["none", "minimal", "low", "medium", "high", "xhigh"] as const;

/**
 * `include` values Parley answers. `reasoning.encrypted_content` is taken and
 * needs nothing: reasoning items carry their text (`content`), which a client
 * sends back as it is; `message.input_image.image_url` is always included.
 */
export const includeValues = ["message.output_text.logprobs", "reasoning.encrypted_content", "message.input_image.image_url"] as const;

/** Fields of the API Parley cannot honour: refused by name with the reason. */
const REFUSED: Record<string, string> = {
  prompt: "reusable prompts are not supported by Parley: send `instructions` and `input`",
  max_tool_calls: "max_tool_calls is not supported: a chat-completions upstream cannot be held to a number of calls",
  context_management: "context_management is not supported: Parley fits a conversation's history itself (`truncation`, or the conversation's context strategy)",
  prompt_cache_options: "prompt_cache_options is not supported by Parley",
};

const responseRequestFields = {
  model: storableText().min(1).openapi({ example: "parley-sim-1" }),
  input: z.union([storableText(), z.array(inputItemSchema)], { error: "must be a string or an array of input items" }),
  instructions: storableText().nullish(),
  conversation: z
    .union([storableText().min(1), z.object({ id: storableText().min(1) })], { error: "must be a conversation id or {id}" })
    .nullish(),
  previous_response_id: storableText().min(1).nullish(),
  store: z.boolean().nullish().openapi({ description: "Default true. `false`: the response is not stored and cannot be retrieved." }),
  background: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_obfuscation: z.boolean().nullish() }).nullish(),
  tools: z.array(toolSchema).nullish(),
  tool_choice: toolChoiceSchema.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  max_output_tokens: z.int().min(16).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  top_logprobs: z.int().min(0).max(20).nullish(),
  truncation: z.enum(["auto", "disabled"]).nullish(),
  text: z.object({ format: textFormatSchema.nullish(), verbosity: z.enum(["low", "medium", "high"]).nullish() }).nullish(),
  reasoning: z.object({ effort: z.enum(reasoningEfforts).nullish(), summary: z.enum(["auto", "concise", "detailed"]).nullish() }).nullish(),
  metadata: metadataSchema.nullish(),
  include: z.array(z.enum(includeValues)).nullish(),
  user: storableText().nullish(),
  safety_identifier: storableText().max(64).nullish(),
  prompt_cache_key: storableText().max(64).nullish(),
  prompt_cache_retention: z.enum(["in-memory", "in_memory", "24h"]).nullish(),
  service_tier: z.enum(["auto", "default", "flex", "priority"]).nullish(),
  // Declared so they are refused by name rather than as unknown fields.
  prompt: z.unknown().optional(),
  max_tool_calls: z.unknown().optional(),
  context_management: z.unknown().optional(),
  prompt_cache_options: z.unknown().optional(),
};

export const responseRequestSchema = z
  .strictObject(responseRequestFields)
  .superRefine((body, ctx) => {
    const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", path: [path], message });
    for (const [field, why] of Object.entries(REFUSED)) {
      if (body[field as keyof typeof body] !== undefined && body[field as keyof typeof body] !== null) issue(field, why);
    }
    if (body.conversation != null && body.previous_response_id != null) {
      issue("previous_response_id", "cannot be used with `conversation`: a conversation already holds the earlier turns");
    }
    if (body.background && body.store === false) issue("background", "a background response must be stored: leave `store` true");
    if (body.service_tier === "flex" || body.service_tier === "priority") {
      issue("service_tier", "only `auto` and `default` are supported: Parley has no service tiers");
    }
    if (body.tool_choice && typeof body.tool_choice === "object") {
      const name = body.tool_choice.name;
      const declared = (body.tools ?? []).some((t) => t.name === name);
      if (!declared) ctx.addIssue({ code: "custom", path: ["tool_choice", "name"], message: `names no function in \`tools\`: '${name}'` });
    }
  })
  .openapi("CreateResponseRequest");
export type ResponseRequest = z.infer<typeof responseRequestSchema>;

/** The conversation a request names, by id (`"conv_…"` or `{id}`); null when none. */
export const conversationIdOf = (body: Pick<ResponseRequest, "conversation">): string | null =>
  body.conversation == null ? null : typeof body.conversation === "string" ? body.conversation : body.conversation.id;

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/**
 * The chat-completions params for the upstream, from a validated body and the
 * body as parsed from JSON (`raw`): JSON schemas (a tool's `parameters`, a
 * json_schema format) are taken from `raw` with their keys in the order the
 * client wrote them, as zod's output puts declared keys first.
 *
 * Also Parley's own per-turn keys, which the caller takes out before the
 * upstream sees them: `instructions` (the system text of this turn only) and
 * `truncation` (when given).
 */
export function toChatParams(body: ResponseRequest, raw: unknown): Record<string, unknown> {
  const given = asRecord(raw) ?? {};
  const params: Record<string, unknown> = {};
  const tools = body.tools ?? [];
  if (tools.length) {
    const rawTools = Array.isArray(given.tools) ? given.tools : [];
    params.tools = tools.map((t, i) => {
      const rawParameters = asRecord(asRecord(rawTools[i])?.parameters);
      return {
        type: "function",
        function: {
          name: t.name,
          ...(t.description != null ? { description: t.description } : {}),
          ...(t.parameters != null ? { parameters: rawParameters ?? t.parameters } : {}),
          ...(t.strict != null ? { strict: t.strict } : {}),
        },
      };
    });
  }
  if (body.tool_choice != null) {
    params.tool_choice =
      typeof body.tool_choice === "string" ? body.tool_choice : { type: "function", function: { name: body.tool_choice.name } };
  }
  if (body.parallel_tool_calls != null) params.parallel_tool_calls = body.parallel_tool_calls;
  if (body.max_output_tokens != null) params.max_tokens = body.max_output_tokens;
  if (body.temperature != null) params.temperature = body.temperature;
  if (body.top_p != null) params.top_p = body.top_p;
  if (body.presence_penalty != null) params.presence_penalty = body.presence_penalty;
  if (body.frequency_penalty != null) params.frequency_penalty = body.frequency_penalty;
  const format = body.text?.format;
  if (format?.type === "json_object") params.response_format = { type: "json_object" };
  if (format?.type === "json_schema") {
    // The format's fields in the client's order, its schema as written: strict-mode upstreams order output by it.
    const rawFormat = asRecord(asRecord(given.text)?.format) ?? {};
    const declared: Record<string, unknown> = { name: format.name, description: format.description, schema: format.schema, strict: format.strict };
    const order = [...Object.keys(rawFormat).filter((k) => k in declared), ...Object.keys(declared).filter((k) => !(k in rawFormat))];
    const jsonSchema: Record<string, unknown> = {};
    for (const key of order) {
      const value = key === "schema" ? (asRecord(rawFormat.schema) ?? format.schema) : declared[key];
      if (value != null) jsonSchema[key] = value;
    }
    params.response_format = { type: "json_schema", json_schema: jsonSchema };
  }
  if (body.text?.verbosity != null) params.verbosity = body.text.verbosity;
  if (body.reasoning?.effort != null) params.reasoning_effort = body.reasoning.effort;
  if (body.top_logprobs != null || body.include?.includes(LOGPROBS_INCLUDE)) {
    params.logprobs = true;
    if (body.top_logprobs != null) params.top_logprobs = body.top_logprobs;
  }
  if (body.user != null) params.user = body.user;
  if (body.safety_identifier != null) params.safety_identifier = body.safety_identifier;
  if (body.prompt_cache_key != null) params.prompt_cache_key = body.prompt_cache_key;
  if (body.instructions != null) params.instructions = body.instructions;
  if (body.truncation != null) params.truncation = body.truncation;
  return params;
}

/** Parley's own keys in toChatParams' result, for the caller to take out before the upstream. */
export const PARLEY_TURN_KEYS = ["instructions", "truncation"] as const;
