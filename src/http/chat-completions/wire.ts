import { z } from "@hono/zod-openapi";
import { isStorableJson, storableText } from "../../domain/resources.ts";
import type { ChatMessage } from "../../providers/types.ts";

/**
 * The chat-completions wire format, as the OpenAI and Together SDKs speak it:
 * the request schema (validation and OpenAPI), its translation into what
 * Parley works with, and the response and chunk objects.
 */

const contentPart = z
  .object({ type: z.string(), text: z.string().optional() })
  .loose()
  .superRefine((part, ctx) => {
    if (part.type !== "text") {
      ctx.addIssue({ code: "custom", message: `content parts of type '${part.type}' are not supported; send text`, path: ["type"] });
    } else if (typeof part.text !== "string" || part.text.includes("\u0000") || !part.text.isWellFormed()) {
      // Stored as the message's content: the same text rules as a string content.
      ctx.addIssue({ code: "custom", message: "a text part needs `text`, without NUL characters or lone surrogates", path: ["text"] });
    }
  });

const chatMessage = z
  .object({
    role: z.enum(["system", "developer", "user", "assistant"], {
      error: "role must be system, developer, user or assistant (tool messages are not supported)",
    }),
    content: z.union([storableText(), z.array(contentPart).min(1)], {
      error: "content must be a string or an array of text parts",
    }),
    name: z.string().optional(),
  })
  // Fields SDKs echo back on assistant messages (`refusal: null`, `annotations`) are accepted and dropped.
  .loose()
  .superRefine((m, ctx) => {
    const toolCalls = (m as { tool_calls?: unknown }).tool_calls;
    if (Array.isArray(toolCalls) && toolCalls.length > 0) {
      ctx.addIssue({ code: "custom", message: "tool calls are not supported", path: ["tool_calls"] });
    }
  });

/** Fields of the API that Parley cannot honour: refused by name rather than silently ignored. */
const UNSUPPORTED: Record<string, (value: unknown) => boolean> = {
  tools: (v) => Array.isArray(v) && v.length > 0,
  functions: (v) => Array.isArray(v) && v.length > 0,
  tool_choice: (v) => v !== undefined && v !== null && v !== "none",
  function_call: (v) => v !== undefined && v !== null && v !== "none",
  logprobs: (v) => v === true,
  top_logprobs: (v) => v !== undefined && v !== null,
  audio: (v) => v !== undefined && v !== null,
  modalities: (v) => Array.isArray(v) && v.some((m) => m !== "text"),
};

const chatCompletionFields = {
  model: storableText().min(1).openapi({ example: "parley-sim-1" }),
  messages: z.array(chatMessage).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).loose().nullish(),
  n: z.literal(1, { error: "only n = 1 is supported" }).nullish(),
  max_tokens: z.int().min(1).nullish(),
  max_completion_tokens: z.int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.int().nullish(),
  stop: z.union([storableText(), z.array(storableText()).max(16)]).nullish(),
  repetition_penalty: z.number().nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  seed: z.int().nullish(),
};
/** The fields the schema declares; any other is passed through. */
const DECLARED = new Set(Object.keys(chatCompletionFields));

export const chatCompletionRequestSchema = z
  .object(chatCompletionFields)
  // Any other sampling field goes to the upstream untouched.
  .catchall(z.unknown())
  .superRefine((body, ctx) => {
    for (const [field, refused] of Object.entries(UNSUPPORTED)) {
      if (refused(body[field])) ctx.addIssue({ code: "custom", message: `${field} is not supported by Parley`, path: [field] });
    }
    // Passed-through fields are stored with a conversation's reply: held to what jsonb keeps as given,
    // their names as much as their values.
    for (const [field, value] of Object.entries(body)) {
      if (!DECLARED.has(field) && !isStorableJson([field, value])) {
        ctx.addIssue({ code: "custom", message: "must not contain NUL characters, lone surrogates or numbers beyond ±1.8e308", path: [field] });
      }
    }
  })
  .openapi("ChatCompletionRequest");
export type ChatCompletionRequest = z.infer<typeof chatCompletionRequestSchema>;

/** Ours, not the upstream's: never passed through as sampling fields. */
const NOT_SAMPLING = new Set(["model", "messages", "stream", "stream_options", "n"]);

export function toChatMessages(messages: ChatCompletionRequest["messages"]): ChatMessage[] {
  return messages.map((m) => ({
    role: m.role === "developer" ? "system" : m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text ?? "").join(""),
  }));
}

export function toSamplingParams(body: ChatCompletionRequest): Record<string, unknown> {
  return Object.fromEntries(Object.entries(body).filter(([k, v]) => !NOT_SAMPLING.has(k) && v !== undefined));
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

const usageSchema = z.object({ prompt_tokens: z.int(), completion_tokens: z.int(), total_tokens: z.int() });

export const chatCompletionSchema = z
  .object({
    id: z.string(),
    object: z.literal("chat.completion"),
    created: z.int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.int(),
        message: z.object({ role: z.literal("assistant"), content: z.string() }),
        finish_reason: z.string().nullable(),
        logprobs: z.null(),
      }),
    ),
    usage: usageSchema.nullable(),
  })
  .openapi("ChatCompletion");
export type ChatCompletion = z.infer<typeof chatCompletionSchema>;

export function chatCompletion(opts: {
  id: string;
  created: number;
  model: string;
  content: string;
  finishReason: string | null;
  usage: CompletionUsage | null;
}): ChatCompletion {
  return {
    id: opts.id,
    object: "chat.completion",
    created: opts.created,
    model: opts.model,
    choices: [
      { index: 0, message: { role: "assistant", content: opts.content }, finish_reason: opts.finishReason, logprobs: null },
    ],
    usage: opts.usage,
  };
}

export function chatCompletionChunk(opts: {
  id: string;
  created: number;
  model: string;
  delta: { role?: "assistant"; content?: string };
  finishReason: string | null;
  usage?: CompletionUsage | null;
}) {
  return {
    id: opts.id,
    object: "chat.completion.chunk" as const,
    created: opts.created,
    model: opts.model,
    choices: [{ index: 0, delta: opts.delta, finish_reason: opts.finishReason, logprobs: null }],
    ...(opts.usage !== undefined ? { usage: opts.usage } : {}),
  };
}
