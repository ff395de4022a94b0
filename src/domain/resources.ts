import { z } from "@hono/zod-openapi";
import type { ConversationRow, MessageRow } from "../db/schema.ts";
import { contextStrategies, messageRoles, messageStatuses } from "../db/schema.ts";
import { contentPartSchema, toolCallSchema, type ContentPart, type ToolCall } from "./chat-message.ts";
import { isStorableJson, storableText } from "./storable-json.ts";

/**
 * The resources as clients see them: one zod schema each, which types the
 * code, documents /openapi.json, and is what the presenters below produce.
 */

export { isStorableJson, storableText };

// Entry count and sizes are the deployment's limits (MAX_METADATA_*), checked after parsing.
export const metadataSchema = z
  .record(storableText(), storableText())
  .openapi({
    description: "String pairs of your own: up to 16, keys up to 64 and values up to 512 characters (by default).",
    example: { app: "travel" },
  });

export const paramsSchema = z
  .record(z.string(), z.unknown())
  .refine(isStorableJson, { message: "must not contain NUL (\\u0000) characters, lone surrogates or numbers beyond ±1.8e308" })
  .openapi({
    description:
      "Default sampling fields for the model (`temperature`, `max_tokens`, `top_p`, `stop`, …), passed to the upstream as given.",
    example: { temperature: 0.7, max_tokens: 512 },
  });

export const usageSchema = z
  .object({
    prompt_tokens: z.int(),
    completion_tokens: z.int(),
    total_tokens: z.int(),
    prompt_tokens_details: z.record(z.string(), z.unknown()).optional().openapi({ description: "As the upstream reported them (e.g. `cached_tokens`)." }),
    completion_tokens_details: z.record(z.string(), z.unknown()).optional().openapi({ description: "As the upstream reported them (e.g. `reasoning_tokens`)." }),
  })
  .openapi("Usage");

export const conversationSchema = z
  .object({
    id: z.string().openapi({ example: "conv_01jf3t8vvaf8s9k0d7k6x1s2y3" }),
    object: z.literal("conversation"),
    created_at: z.int().openapi({ description: "Unix seconds." }),
    updated_at: z.int(),
    title: z.string().nullable(),
    model: z.string(),
    system: z.string().nullable(),
    params: paramsSchema,
    metadata: z.record(z.string(), z.string()),
    message_count: z.int(),
    context_strategy: z.enum(contextStrategies).openapi({
      description:
        "How a turn's history is fitted into the model's context window: `auto` sends the newest messages that fit, " +
        "`summarize` also sends a running summary of the older ones, `strict` refuses a turn whose history does not fit.",
    }),
    summary: z
      .object({ content: z.string(), through_seq: z.int(), tokens: z.int(), updated_at: z.int() })
      .nullable()
      .openapi({ description: "`summarize`: the running summary of the messages up to `through_seq`." }),
  })
  .openapi("Conversation");
export type ConversationResource = z.infer<typeof conversationSchema>;

export const messageSchema = z
  .object({
    id: z.string().openapi({ example: "msg_01jf3t8vvaf8s9k0d7k6x1s2y3" }),
    object: z.literal("message"),
    conversation_id: z.string(),
    seq: z.int().openapi({ description: "Position in the conversation: 1, 2, 3…, increasing; an item deleted leaves a gap." }),
    role: z.enum(messageRoles),
    content: z.string().openapi({
      description: "The text: as given, or the texts of `content_parts` joined; \"\" on a reply that only called tools.",
    }),
    content_parts: z
      .array(contentPartSchema)
      .nullable()
      .openapi({ description: "The content as given when it was an array of parts (text, image_url); null when it was a string." }),
    name: z.string().nullable(),
    tool_calls: z
      .array(toolCallSchema)
      .nullable()
      .openapi({ description: "An assistant message's tool calls (a reply's, as the model streamed them); null when none." }),
    tool_call_id: z.string().nullable().openapi({ description: "A `tool` message: the id of the call it answers." }),
    reasoning: z.string().nullable().openapi({
      description: "A reply's reasoning (`reasoning_content`), kept apart from its content; not sent upstream again unless a turn's params say `send_reasoning: true`.",
    }),
    logprobs: z.unknown().nullable().openapi({ description: "A reply's logprobs as the upstream gave them (asked for with `logprobs` in params)." }),
    status: z.enum(messageStatuses),
    model: z.string().nullable(),
    finish_reason: z.string().nullable(),
    usage: usageSchema.nullable(),
    error: z
      .object({
        message: z.string(),
        type: z.string(),
        code: z.string(),
        status: z.int().optional().openapi({ description: "When the upstream refused the request (a 4xx other than 408/429): the status it answered." }),
        param: z.string().nullable().optional().openapi({ description: "With `status`: the request field the upstream named, if any." }),
      })
      .nullable()
      .openapi({
        description:
          "Why a reply failed. On the messages of a turn whose reply failed before producing anything: `reply_failed`, naming the reply (they are left out of history).",
      }),
    created_at: z.int(),
    completed_at: z.int().nullable(),
    ttft_ms: z.int().nullable().openapi({
      description:
        "A reply's time to first token: milliseconds from its creation (queued) to its first streamed token (text, reasoning or a tool call). " +
        "null on other messages and on a reply that streamed nothing; after a lost worker, the attempt that produced the content.",
      example: 186,
    }),
    metadata: z.record(z.string(), z.string()),
    tokens: z.int().nullable().openapi({ description: "The message's size in the model's prompt (o200k_base); null while a reply is in flight." }),
    context: z
      .object({ messages: z.int(), tokens: z.int() })
      .nullable()
      .openapi({ description: "On a reply: how many earlier messages, and how many tokens with the system prompt, were sent for it." }),
  })
  .openapi("Message");
export type MessageResource = z.infer<typeof messageSchema>;

const unixSeconds = (d: Date): number => Math.floor(d.getTime() / 1000);

export function toConversationResource(row: ConversationRow): ConversationResource {
  return {
    id: row.id,
    object: "conversation",
    created_at: unixSeconds(row.createdAt),
    updated_at: unixSeconds(row.updatedAt),
    title: row.title,
    model: row.model,
    system: row.system,
    params: row.params,
    metadata: row.metadata,
    message_count: row.messageCount,
    context_strategy: row.contextStrategy,
    summary:
      row.summary === null || row.summaryUpdatedAt === null
        ? null
        : { content: row.summary, through_seq: row.summaryThroughSeq, tokens: row.summaryTokens, updated_at: unixSeconds(row.summaryUpdatedAt) },
  };
}

export function toMessageResource(row: MessageRow): MessageResource {
  return {
    id: row.id,
    object: "message",
    conversation_id: row.conversationId,
    seq: row.seq,
    role: row.role,
    content: row.content,
    content_parts: (row.parts as ContentPart[] | null) ?? null,
    name: row.name ?? null,
    tool_calls: (row.toolCalls as ToolCall[] | null) ?? null,
    tool_call_id: row.toolCallId ?? null,
    reasoning: row.reasoning ?? null,
    logprobs: row.logprobs ?? null,
    status: row.status,
    model: row.model,
    finish_reason: row.finishReason,
    usage: row.usage,
    error: row.error,
    created_at: unixSeconds(row.createdAt),
    completed_at: row.completedAt ? unixSeconds(row.completedAt) : null,
    // Clamped: created_at is the API's clock, the first token Redis's; a skew must not show a negative time.
    ttft_ms: row.firstTokenAt ? Math.max(0, row.firstTokenAt.getTime() - row.createdAt.getTime()) : null,
    metadata: row.metadata,
    tokens: row.status === "queued" || row.status === "in_progress" ? null : row.tokens,
    context: row.contextMessages === null || row.contextTokens === null ? null : { messages: row.contextMessages, tokens: row.contextTokens },
  };
}

export const listOf = <T extends z.ZodType>(item: T, name: string) =>
  z
    .object({
      object: z.literal("list"),
      data: z.array(item),
      first_id: z.string().nullable(),
      last_id: z.string().nullable(),
      has_more: z.boolean(),
    })
    .openapi(name);
