import { z } from "@hono/zod-openapi";
import { checkChatMessage, chatMessageShape } from "../../domain/chat-message.ts";
import { isStorableJson, storableText } from "../../domain/resources.ts";
import type { ChatMessage } from "../../providers/types.ts";

/**
 * The chat-completions wire format, as the OpenAI and Together SDKs speak it:
 * the request schema (validation and OpenAPI), its translation into what
 * Parley works with, and the response and chunk objects.
 */

/**
 * A message as the SDKs send it: the one message model (content a string or
 * text and image parts, tool calls, tool_call_id, name, reasoning_content).
 * Fields SDKs echo back on assistant messages (`refusal: null`,
 * `annotations`, `audio`) are accepted and dropped.
 */
const chatMessage = z.object(chatMessageShape).superRefine(checkChatMessage);

/** A tool the model may call: OpenAI's function tool. Passed to the upstream exactly as sent. */
const toolDefinition = z.looseObject({
  type: z.literal("function", { error: "only tools of type `function` are supported" }),
  function: z.looseObject({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "must be 1–64 letters, digits, underscores or dashes"),
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown(), { error: "must be a JSON Schema object" }).nullish(),
    strict: z.boolean().nullish(),
  }),
});

const toolChoice = z.union(
  [
    z.enum(["none", "auto", "required"]),
    z.looseObject({ type: z.literal("function"), function: z.looseObject({ name: z.string().min(1) }) }),
  ],
  { error: "must be none, auto, required or {type: function, function: {name}}" },
);

/**
 * Fields of the API that Parley cannot honour: refused by name rather than
 * silently ignored. The legacy `functions`/`function_call` are refused, not
 * passed on: their replies stream as `delta.function_call`, which Parley does
 * not relay; `tools` and `tool_choice` do the same and are.
 */
const UNSUPPORTED: Record<string, { refused: (value: unknown) => boolean; why: string }> = {
  functions: { refused: (v) => v !== undefined && v !== null, why: "functions is deprecated and not supported by Parley; send tools" },
  function_call: { refused: (v) => v !== undefined && v !== null, why: "function_call is deprecated and not supported by Parley; send tool_choice" },
  audio: { refused: (v) => v !== undefined && v !== null, why: "audio is not supported by Parley" },
  modalities: { refused: (v) => Array.isArray(v) && v.some((m) => m !== "text"), why: "modalities other than text are not supported by Parley" },
};

/** The most choices one call may ask for (OpenAI's own limit). */
export const MAX_CHOICES = 128;

const chatCompletionFields = {
  model: storableText().min(1).openapi({ example: "parley-sim-1" }),
  messages: z.array(chatMessage).min(1),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).loose().nullish(),
  n: z.int().min(1).max(MAX_CHOICES).nullish().openapi({ description: "Choices to generate: more than 1 only on the stateless endpoint." }),
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
  tools: z.array(toolDefinition).nullish(),
  tool_choice: toolChoice.nullish(),
  parallel_tool_calls: z.boolean().nullish(),
  // OpenAI takes a boolean, Together a number of top tokens: either is passed on.
  logprobs: z.union([z.boolean(), z.int().min(0)]).nullish(),
  top_logprobs: z.int().min(0).max(20).nullish(),
  send_reasoning: z
    .boolean()
    .nullish()
    .openapi({ description: "Parley's own: send earlier replies' reasoning back to the model (default false). Never passed upstream." }),
};
/** The fields the schema declares; any other is passed through. */
const DECLARED = new Set(Object.keys(chatCompletionFields));

export const chatCompletionRequestSchema = z
  .object(chatCompletionFields)
  // Any other sampling field goes to the upstream untouched.
  .catchall(z.unknown())
  .superRefine((body, ctx) => {
    for (const [field, { refused, why }] of Object.entries(UNSUPPORTED)) {
      if (refused(body[field])) ctx.addIssue({ code: "custom", message: why, path: [field] });
    }
    // Passed-through fields are stored with a conversation's reply: held to what JSON keeps as given,
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
const NOT_SAMPLING = new Set(["model", "messages", "stream", "stream_options"]);

/**
 * The messages as the provider takes them, as given; earlier replies' reasoning
 * only when the request asks to send it back.
 */
export function toChatMessages(messages: ChatCompletionRequest["messages"], opts: { sendReasoning?: boolean } = {}): ChatMessage[] {
  return messages.map((m) => {
    const { reasoning_content, ...rest } = m;
    const message = { ...rest, content: m.content ?? null } as ChatMessage;
    if (opts.sendReasoning && reasoning_content !== undefined) message.reasoning_content = reasoning_content;
    return message;
  });
}

/**
 * Where a `tool` message answers no call made earlier in the same messages:
 * its index, or null. A stateless call has no stored history to answer.
 */
export function unansweredToolResult(messages: ChatCompletionRequest["messages"]): number | null {
  const calls = new Set<string>();
  for (const [i, m] of messages.entries()) {
    for (const call of m.tool_calls ?? []) calls.add(call.id);
    if (m.role === "tool" && !calls.has(m.tool_call_id ?? "")) return i;
  }
  return null;
}

/**
 * Every field but ours, in the order and form the client sent it: `given` is
 * the body as parsed from JSON (the validated one has its declared fields in
 * the schema's order), so tools and json schemas reach the upstream as written.
 */
export function toSamplingParams(body: ChatCompletionRequest, given: unknown): Record<string, unknown> {
  const raw = typeof given === "object" && given !== null && !Array.isArray(given) ? (given as Record<string, unknown>) : body;
  return Object.fromEntries(Object.entries(raw).filter(([k, v]) => !NOT_SAMPLING.has(k) && v !== undefined && k in body));
}

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

const usageSchema = z.object({ prompt_tokens: z.int(), completion_tokens: z.int(), total_tokens: z.int() });

const toolCallOut = z.object({
  id: z.string(),
  type: z.literal("function"),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

export const chatCompletionSchema = z
  .object({
    id: z.string(),
    object: z.literal("chat.completion"),
    created: z.int(),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.int(),
        message: z.object({
          role: z.literal("assistant"),
          content: z.string().nullable().openapi({ description: "null when the model only called tools" }),
          reasoning_content: z.string().optional(),
          tool_calls: z.array(toolCallOut).optional(),
        }),
        finish_reason: z.string().nullable(),
        logprobs: z.unknown().nullable(),
      }),
    ),
    usage: usageSchema.nullable(),
  })
  .openapi("ChatCompletion");
export type ChatCompletion = z.infer<typeof chatCompletionSchema>;

/** One choice of a whole reply, as the relay hands it over. */
export interface ChoiceOut {
  index: number;
  content: string;
  reasoning: string | null;
  toolCalls: { id: string; type: "function"; function: { name: string; arguments: string } }[] | null;
  logprobs: unknown;
  finishReason: string | null;
}

export function chatCompletion(opts: {
  id: string;
  created: number;
  model: string;
  choices: ChoiceOut[];
  usage: CompletionUsage | null;
}): ChatCompletion {
  return {
    id: opts.id,
    object: "chat.completion",
    created: opts.created,
    model: opts.model,
    choices: opts.choices.map((c) => ({
      index: c.index,
      message: {
        role: "assistant",
        // As OpenAI answers a reply that only called tools.
        content: c.toolCalls && !c.content ? null : c.content,
        ...(c.reasoning ? { reasoning_content: c.reasoning } : {}),
        ...(c.toolCalls ? { tool_calls: c.toolCalls } : {}),
      },
      finish_reason: c.finishReason,
      logprobs: c.logprobs ?? null,
    })),
    usage: opts.usage,
  };
}

/** What one streamed chunk says for one choice, in OpenAI's delta field names. */
export interface ChunkDelta {
  role?: "assistant";
  content?: string;
  reasoning_content?: string;
  tool_calls?: unknown[];
}

export function chatCompletionChunk(opts: {
  id: string;
  created: number;
  model: string;
  index?: number;
  delta: ChunkDelta;
  logprobs?: unknown;
  finishReason: string | null;
  usage?: CompletionUsage | null;
}) {
  return {
    id: opts.id,
    object: "chat.completion.chunk" as const,
    created: opts.created,
    model: opts.model,
    choices: [{ index: opts.index ?? 0, delta: opts.delta, finish_reason: opts.finishReason, logprobs: opts.logprobs ?? null }],
    ...(opts.usage !== undefined ? { usage: opts.usage } : {}),
  };
}
