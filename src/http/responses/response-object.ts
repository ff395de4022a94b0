import { z } from "@hono/zod-openapi";
import type { MessageRow, StoredError } from "../../db/schema.ts";
import type { CompletionEnd } from "../../domain/stateless-completions.ts";
import type { ToolCall } from "../../domain/chat-message.ts";
import { itemSchema, messageToItems, withReasoningSummary, type Item } from "./items.ts";
import { includeValues, reasoningEfforts, type ResponseRequest } from "./request.ts";

/**
 * The Response object: what the request fixed (ResponseBase, stored as JSON
 * with the response) plus how it went (ResponseOutcome: a reply row's, or a
 * stateless completion's end), put together as the Open Responses
 * specification and the OpenAI SDK read it.
 */

const functionToolOut = z.object({
  type: z.literal("function"),
  name: z.string(),
  description: z.string().nullable(),
  parameters: z.record(z.string(), z.unknown()).nullable(),
  strict: z.boolean().nullable(),
});

const toolChoiceOut = z.union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), name: z.string() })]);

const textFormatOut = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    name: z.string(),
    description: z.string().nullable(),
    schema: z.record(z.string(), z.unknown()),
    strict: z.boolean(),
  }),
]);

/** What a request fixed about its response: everything of the Response object but its outcome. */
export const responseBaseSchema = z.object({
  id: z.string(),
  created_at: z.int(),
  model: z.string(),
  instructions: z.string().nullable(),
  tools: z.array(functionToolOut),
  tool_choice: toolChoiceOut,
  parallel_tool_calls: z.boolean(),
  temperature: z.number(),
  top_p: z.number(),
  presence_penalty: z.number(),
  frequency_penalty: z.number(),
  top_logprobs: z.int(),
  max_output_tokens: z.int().nullable(),
  max_tool_calls: z.null(),
  truncation: z.enum(["auto", "disabled"]),
  text: z.object({ format: textFormatOut, verbosity: z.enum(["low", "medium", "high"]).optional() }),
  reasoning: z.object({ effort: z.enum(reasoningEfforts).nullable(), summary: z.enum(["auto", "concise", "detailed"]).nullable() }).nullable(),
  metadata: z.record(z.string(), z.string()),
  previous_response_id: z.string().nullable(),
  conversation: z.object({ id: z.string() }).nullable(),
  store: z.boolean(),
  background: z.boolean(),
  service_tier: z.string(),
  safety_identifier: z.string().nullable(),
  prompt_cache_key: z.string().nullable(),
  user: z.string().nullable(),
  /** Not part of the Response object: what the request asked `include`d in its items. */
  include: z.array(z.enum(includeValues)),
});
export type ResponseBase = z.infer<typeof responseBaseSchema>;

const asRecord = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;

/**
 * The base of a new response. `raw` (the body as parsed from JSON) keeps JSON
 * schemas in the client's key order, as the echo of `tools` and `text` shows them.
 * Unset sampling fields are reported with the API's defaults (the spec wants numbers).
 */
export function responseBaseOf(
  body: ResponseRequest,
  ids: { id: string; createdAt: number; conversationId: string | null },
  raw?: unknown,
): ResponseBase {
  const given = asRecord(raw) ?? {};
  const rawTools = Array.isArray(given.tools) ? given.tools : [];
  const format = body.text?.format;
  const rawFormat = asRecord(asRecord(given.text)?.format);
  return {
    id: ids.id,
    created_at: ids.createdAt,
    model: body.model,
    instructions: body.instructions ?? null,
    tools: (body.tools ?? []).map((t, i) => ({
      type: "function" as const,
      name: t.name,
      description: t.description ?? null,
      parameters: t.parameters == null ? null : (asRecord(asRecord(rawTools[i])?.parameters) ?? t.parameters),
      strict: t.strict ?? null,
    })),
    tool_choice: body.tool_choice ?? "auto",
    parallel_tool_calls: body.parallel_tool_calls ?? true,
    temperature: body.temperature ?? 1,
    top_p: body.top_p ?? 1,
    presence_penalty: body.presence_penalty ?? 0,
    frequency_penalty: body.frequency_penalty ?? 0,
    top_logprobs: body.top_logprobs ?? 0,
    max_output_tokens: body.max_output_tokens ?? null,
    max_tool_calls: null,
    truncation: body.truncation ?? "disabled",
    text: {
      format:
        format?.type === "json_schema"
          ? {
              type: "json_schema",
              name: format.name,
              description: format.description ?? null,
              schema: asRecord(rawFormat?.schema) ?? format.schema,
              strict: format.strict ?? false,
            }
          : { type: format?.type ?? "text" },
      ...(body.text?.verbosity ? { verbosity: body.text.verbosity } : {}),
    },
    reasoning: body.reasoning ? { effort: body.reasoning.effort ?? null, summary: body.reasoning.summary ?? null } : null,
    metadata: body.metadata ?? {},
    previous_response_id: body.previous_response_id ?? null,
    conversation: ids.conversationId ? { id: ids.conversationId } : null,
    store: body.store ?? true,
    background: body.background ?? false,
    service_tier: "default",
    safety_identifier: body.safety_identifier ?? null,
    prompt_cache_key: body.prompt_cache_key ?? null,
    user: body.user ?? null,
    include: body.include ?? [],
  };
}

export const responseStatuses = ["queued", "in_progress", "completed", "failed", "incomplete", "cancelled"] as const;
export type ResponseStatus = (typeof responseStatuses)[number];

export const responseUsageSchema = z
  .object({
    input_tokens: z.int(),
    input_tokens_details: z.object({ cached_tokens: z.int() }),
    output_tokens: z.int(),
    output_tokens_details: z.object({ reasoning_tokens: z.int() }),
    total_tokens: z.int(),
  })
  .openapi("ResponseUsage");
export type ResponseUsage = z.infer<typeof responseUsageSchema>;

export const responseObjectSchema = z
  .object({
    id: z.string().openapi({ example: "resp_01jf3t8vvaf8s9k0d7k6x1s2y3" }),
    object: z.literal("response"),
    created_at: z.int(),
    status: z.enum(responseStatuses),
    background: z.boolean(),
    completed_at: z.int().nullable(),
    conversation: z.object({ id: z.string() }).nullable(),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    incomplete_details: z.object({ reason: z.string() }).nullable(),
    instructions: z.string().nullable(),
    max_output_tokens: z.int().nullable(),
    max_tool_calls: z.int().nullable(),
    model: z.string(),
    output: z.array(itemSchema),
    parallel_tool_calls: z.boolean(),
    previous_response_id: z.string().nullable(),
    prompt_cache_key: z.string().nullable(),
    reasoning: responseBaseSchema.shape.reasoning,
    safety_identifier: z.string().nullable(),
    service_tier: z.string(),
    store: z.boolean(),
    temperature: z.number(),
    text: responseBaseSchema.shape.text,
    tool_choice: toolChoiceOut,
    tools: z.array(functionToolOut),
    top_logprobs: z.int(),
    top_p: z.number(),
    truncation: z.enum(["auto", "disabled"]),
    usage: responseUsageSchema.nullable(),
    user: z.string().nullable(),
    metadata: z.record(z.string(), z.string()),
    presence_penalty: z.number(),
    frequency_penalty: z.number(),
  })
  .openapi("Response");
export type ResponseObject = z.infer<typeof responseObjectSchema>;

/** A chat-completions usage, as upstreams report it (the details only some do). */
export interface ChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens?: number | null } | null;
  completion_tokens_details?: { reasoning_tokens?: number | null } | null;
}

export function responseUsage(usage: ChatUsage): ResponseUsage {
  return {
    input_tokens: usage.prompt_tokens,
    input_tokens_details: { cached_tokens: usage.prompt_tokens_details?.cached_tokens ?? 0 },
    output_tokens: usage.completion_tokens,
    output_tokens_details: { reasoning_tokens: usage.completion_tokens_details?.reasoning_tokens ?? 0 },
    total_tokens: usage.total_tokens,
  };
}

/** How a response went: what a reply row, a stateless completion's end, or a stream so far says. */
export interface ResponseOutcome {
  status: ResponseStatus;
  output: Item[];
  usage: ChatUsage | null;
  error: { code: string; message: string } | null;
  /** The upstream's finish reason: why a response is incomplete. */
  finishReason: string | null;
  /** Unix seconds, when it ended completed (the spec's completed_at is for completed responses). */
  completedAt: number | null;
}

/** Why a response that ended is incomplete, from the upstream's finish reason. */
export function incompleteReason(finishReason: string | null): "max_output_tokens" | "content_filter" | null {
  if (finishReason === "length") return "max_output_tokens";
  if (finishReason === "content_filter") return "content_filter";
  return null;
}

/** Whether the request asked for reasoning summaries: its reasoning items then carry one (see withReasoningSummary). */
export const asksReasoningSummary = (base: Pick<ResponseBase, "reasoning">): boolean => base.reasoning?.summary != null;

export function toResponseObject(base: ResponseBase, outcome: ResponseOutcome): ResponseObject {
  const reason = outcome.status === "incomplete" ? incompleteReason(outcome.finishReason) : null;
  return {
    id: base.id,
    object: "response",
    created_at: base.created_at,
    status: outcome.status,
    background: base.background,
    completed_at: outcome.status === "completed" ? outcome.completedAt : null,
    conversation: base.conversation,
    error: outcome.status === "failed" ? (outcome.error ?? { code: "server_error", message: "The response failed." }) : null,
    incomplete_details: reason ? { reason } : null,
    instructions: base.instructions,
    max_output_tokens: base.max_output_tokens,
    max_tool_calls: base.max_tool_calls,
    model: base.model,
    output: asksReasoningSummary(base) ? outcome.output.map(withReasoningSummary) : outcome.output,
    parallel_tool_calls: base.parallel_tool_calls,
    previous_response_id: base.previous_response_id,
    prompt_cache_key: base.prompt_cache_key,
    reasoning: base.reasoning,
    safety_identifier: base.safety_identifier,
    service_tier: base.service_tier,
    store: base.store,
    temperature: base.temperature,
    text: base.text,
    tool_choice: base.tool_choice,
    tools: base.tools,
    top_logprobs: base.top_logprobs,
    top_p: base.top_p,
    truncation: base.truncation,
    usage: outcome.usage ? responseUsage(outcome.usage) : null,
    user: base.user,
    metadata: base.metadata,
    presence_penalty: base.presence_penalty,
    frequency_penalty: base.frequency_penalty,
  };
}

/** A response's status from its reply's: one that completed short of finishing (length, content filter) is incomplete. */
export function responseStatusOf(status: MessageRow["status"], finishReason: string | null): ResponseStatus {
  if (status === "completed") return incompleteReason(finishReason) ? "incomplete" : "completed";
  return status;
}

/**
 * A reply's items as a response's output: an assistant message that says
 * nothing (a reply queued, or one that failed before its first token) is not
 * output, as a response with nothing to show has none.
 */
export const responseOutput = (items: Item[]): Item[] => items.filter((i) => !(i.type === "message" && i.content.length === 0));

const errorOf = (e: StoredError | null): ResponseOutcome["error"] => (e ? { code: e.code, message: e.message } : null);
const unixSeconds = (d: Date): number => Math.floor(d.getTime() / 1000);

/** How a conversation turn's response went, from its reply row. */
export function responseOutcomeOfReply(row: MessageRow, opts: { include?: readonly string[] } = {}): ResponseOutcome {
  return {
    status: responseStatusOf(row.status, row.finishReason),
    output: responseOutput(messageToItems(row, opts)),
    usage: row.usage,
    error: errorOf(row.error),
    finishReason: row.finishReason,
    completedAt: row.completedAt ? unixSeconds(row.completedAt) : null,
  };
}

/**
 * The reply's id as a message id, for item ids: a conversation reply's is one
 * (`msg_…`); a stateless completion's (`chatcmpl_…`) lends its suffix.
 */
export const replyMessageId = (replyId: string): string =>
  replyId.startsWith("msg_") ? replyId : `msg_${replyId.slice(replyId.indexOf("_") + 1)}`;

/** A stateless completion's end as the row fields items are made from. */
export function completionEndRow(end: CompletionEnd): Parameters<typeof messageToItems>[0] {
  return {
    id: replyMessageId(end.id),
    role: "assistant",
    content: end.content,
    parts: null,
    toolCalls: (end.tool_calls as ToolCall[] | null | undefined) ?? null,
    toolCallId: null,
    reasoning: end.reasoning ?? null,
    logprobs: end.logprobs ?? null,
    status: end.status,
    finishReason: end.finish_reason,
  };
}

/** How a `store: false` response went, from its stateless completion's end. */
export function responseOutcomeOfCompletion(
  end: CompletionEnd,
  opts: { completedAt: number; include?: readonly string[] },
): ResponseOutcome {
  return {
    status: responseStatusOf(end.status, end.finish_reason),
    output: responseOutput(messageToItems(completionEndRow(end), opts)),
    usage: end.usage as ChatUsage | null,
    error: errorOf(end.error),
    finishReason: end.finish_reason,
    completedAt: opts.completedAt,
  };
}
