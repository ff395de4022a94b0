import { z } from "@hono/zod-openapi";
import type { MessageRow } from "../../db/schema.ts";
import { isAcceptedImageUrl, type ContentPart, type ToolCall } from "../../domain/chat-message.ts";
import { NotFoundError } from "../../domain/errors.ts";
import type { GivenMessage } from "../../domain/message-rows.ts";
import { listOf } from "../../domain/resources.ts";
import { storableText } from "../../domain/storable-json.ts";

/**
 * The Responses API's items, as a view of Parley's one message model: input
 * items become the messages a turn stores (chat-completions messages), and a
 * stored message row is shown as the items it stands for. Ids are derived
 * from the row's, so an item id always leads back to its row.
 */

// ---------------------------------------------------------------- input parts

/** A part Parley cannot hand to a chat-completions upstream: known by its type, refused by name rather than dropped. */
const refusedPart = <T extends string>(type: T, why: string) =>
  z.looseObject({ type: z.literal(type) }).superRefine((_, ctx) => ctx.addIssue({ code: "custom", message: why }));

const FILE_REFUSAL =
  "`input_file` parts are not supported: Parley passes input to chat-completions upstreams, which take text and images only";

export const inputTextPartSchema = z
  .looseObject({ type: z.literal("input_text"), text: storableText() })
  .openapi("InputTextContent");

export const inputImagePartSchema = z
  .looseObject({
    type: z.literal("input_image"),
    image_url: storableText()
      .refine(isAcceptedImageUrl, { message: "must be an https: URL or a data:image/…;base64, URL" })
      .nullish(),
    file_id: z.string().nullish(),
    detail: z.enum(["auto", "low", "high"]).nullish(),
  })
  .superRefine((part, ctx) => {
    if (part.file_id != null) {
      ctx.addIssue({
        code: "custom",
        path: ["file_id"],
        message: "images by `file_id` are not supported: Parley has no file store; send `image_url` (https or a data URL)",
      });
    } else if (part.image_url == null) {
      ctx.addIssue({ code: "custom", path: ["image_url"], message: "is required: an https: URL or a data:image/…;base64, URL" });
    }
  })
  .openapi("InputImageContent");

export const outputTextPartSchema = z
  .looseObject({
    type: z.literal("output_text"),
    text: storableText(),
    // Echoed back by clients from an earlier output; citations and logprobs are not stored.
    annotations: z.array(z.unknown()).optional(),
    logprobs: z.array(z.unknown()).nullish(),
  })
  .openapi("OutputTextContent");

export const refusalPartSchema = z.looseObject({ type: z.literal("refusal"), refusal: storableText() }).openapi("RefusalContent");

const partsError = (allowed: string) => ({
  error: (issue: { code: string }) => (issue.code === "invalid_union" ? `must be a part of type ${allowed}` : undefined),
});

const userPart = z.discriminatedUnion(
  "type",
  [inputTextPartSchema, inputImagePartSchema, refusedPart("input_file", FILE_REFUSAL)],
  partsError("`input_text` or `input_image`"),
);
const instructionPart = z.discriminatedUnion("type", [inputTextPartSchema], partsError("`input_text`"));
// input_text is what some clients send for an assistant's earlier text; it is read as output_text.
const assistantPart = z.discriminatedUnion(
  "type",
  [outputTextPartSchema, refusalPartSchema, inputTextPartSchema],
  partsError("`output_text` or `refusal`"),
);
const toolOutputPart = z.discriminatedUnion(
  "type",
  [
    inputTextPartSchema,
    refusedPart("input_image", "images in a `function_call_output` are not supported: chat-completions tool results carry text only"),
    refusedPart("input_file", FILE_REFUSAL),
  ],
  partsError("`input_text`"),
);

// ---------------------------------------------------------------- input items

const itemId = z.string().nullish();
const itemStatus = z.enum(["in_progress", "completed", "incomplete"]).nullish();

const messageContent = <P extends z.ZodType>(part: P, minParts = 1) => z.union([storableText(), z.array(part).min(minParts)]);

const messageFields = { type: z.literal("message"), id: itemId, status: itemStatus };
export const userMessageItemSchema = z.looseObject({ ...messageFields, role: z.literal("user"), content: messageContent(userPart) });
const systemMessageItemSchema = z.looseObject({ ...messageFields, role: z.literal("system"), content: messageContent(instructionPart) });
const developerMessageItemSchema = z.looseObject({ ...messageFields, role: z.literal("developer"), content: messageContent(instructionPart) });
// An assistant message may have no parts: an earlier output's message that only led to tool calls, sent back.
const assistantMessageItemSchema = z.looseObject({ ...messageFields, role: z.literal("assistant"), content: messageContent(assistantPart, 0) });

export const messageItemParamSchema = z
  .discriminatedUnion("role", [userMessageItemSchema, systemMessageItemSchema, developerMessageItemSchema, assistantMessageItemSchema], {
    error: (issue) => (issue.code === "invalid_union" ? "must be one of user, system, developer, assistant" : undefined),
  })
  .openapi("MessageItemParam");

/** Call ids and function names as the spec bounds them. */
const callId = storableText().min(1).max(64);

export const functionCallItemParamSchema = z
  .looseObject({
    type: z.literal("function_call"),
    id: itemId,
    call_id: callId,
    name: storableText().min(1),
    arguments: storableText(),
    status: itemStatus,
  })
  .openapi("FunctionCallItemParam");

export const functionCallOutputItemParamSchema = z
  .looseObject({
    type: z.literal("function_call_output"),
    id: itemId,
    call_id: callId,
    output: z.union([storableText(), z.array(toolOutputPart)]),
    status: itemStatus,
  })
  .openapi("FunctionCallOutputItemParam");

export const reasoningItemParamSchema = z
  .looseObject({
    type: z.literal("reasoning"),
    id: itemId,
    summary: z.array(z.looseObject({ type: z.literal("summary_text"), text: storableText() })),
    content: z.array(z.looseObject({ type: z.literal("reasoning_text"), text: storableText() })).nullish(),
    encrypted_content: z.string().nullish(),
    status: itemStatus,
  })
  .superRefine((item, ctx) => {
    if (item.encrypted_content != null) {
      ctx.addIssue({
        code: "custom",
        path: ["encrypted_content"],
        message: "encrypted reasoning is not supported: Parley cannot decrypt it for a chat-completions upstream; send `content` or `summary` text",
      });
    }
  })
  .openapi("ReasoningItemParam");

export const itemReferenceParamSchema = z
  .object({ type: z.literal("item_reference"), id: z.string().min(1) })
  .openapi("ItemReferenceParam");

const inputItemTypes = "message, function_call, function_call_output, reasoning or item_reference";

/**
 * One input item. The spec lets two kinds leave `type` out: a message (the
 * EasyInputMessage form, `{role, content}`) and an item reference (`{id}`);
 * the type is filled in first, so a bad item is told apart by its `type` and
 * errors name the field inside the one kind it is.
 */
export const inputItemSchema = z
  .preprocess(
    (item) => {
      if (typeof item !== "object" || item === null || Array.isArray(item) || "type" in item) return item;
      if ("role" in item) return { ...item, type: "message" };
      if ("id" in item) return { ...item, type: "item_reference" };
      return item;
    },
    z.discriminatedUnion(
      "type",
      [messageItemParamSchema, functionCallItemParamSchema, functionCallOutputItemParamSchema, reasoningItemParamSchema, itemReferenceParamSchema],
      { error: (issue) => (issue.code === "invalid_union" ? `must be an item of type ${inputItemTypes}` : undefined) },
    ),
  )
  .openapi("InputItem");
export type InputItem = z.infer<typeof inputItemSchema>;

// ---------------------------------------------------------------- output items (the view)

const statusSchema = z.enum(["in_progress", "completed", "incomplete"]);
export type ItemStatus = z.infer<typeof statusSchema>;

export const logprobSchema = z
  .object({
    token: z.string(),
    logprob: z.number(),
    bytes: z.array(z.int()),
    top_logprobs: z.array(z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.int()) })),
  })
  .openapi("LogProb");
export type Logprob = z.infer<typeof logprobSchema>;

export const outputTextSchema = z
  .object({
    type: z.literal("output_text"),
    text: z.string(),
    annotations: z.array(z.unknown()).max(0),
    logprobs: z.array(logprobSchema).optional(),
  })
  .openapi("OutputText");

const inputTextOut = z.object({ type: z.literal("input_text"), text: z.string() });
const inputImageOut = z.object({ type: z.literal("input_image"), image_url: z.string().nullable(), detail: z.enum(["auto", "low", "high"]) });

export const messageItemSchema = z
  .object({
    id: z.string(),
    type: z.literal("message"),
    status: statusSchema,
    role: z.enum(["user", "system", "developer", "assistant"]),
    content: z.array(z.union([inputTextOut, inputImageOut, outputTextSchema])),
  })
  .openapi("MessageItem");

export const functionCallItemSchema = z
  .object({
    id: z.string(),
    type: z.literal("function_call"),
    call_id: z.string(),
    name: z.string(),
    arguments: z.string(),
    status: statusSchema,
  })
  .openapi("FunctionCallItem");

export const functionCallOutputItemSchema = z
  .object({
    id: z.string(),
    type: z.literal("function_call_output"),
    call_id: z.string(),
    output: z.union([z.string(), z.array(inputTextOut)]),
    status: statusSchema,
  })
  .openapi("FunctionCallOutputItem");

export const reasoningItemSchema = z
  .object({
    id: z.string(),
    type: z.literal("reasoning"),
    summary: z.array(z.object({ type: z.literal("summary_text"), text: z.string() })),
    content: z.array(z.object({ type: z.literal("reasoning_text"), text: z.string() })),
  })
  .openapi("ReasoningItem");

export const itemSchema = z
  .discriminatedUnion("type", [messageItemSchema, functionCallItemSchema, functionCallOutputItemSchema, reasoningItemSchema])
  .openapi("Item");
export type MessageItem = z.infer<typeof messageItemSchema>;
export type FunctionCallItem = z.infer<typeof functionCallItemSchema>;
export type FunctionCallOutputItem = z.infer<typeof functionCallOutputItemSchema>;
export type ReasoningItem = z.infer<typeof reasoningItemSchema>;
export type Item = z.infer<typeof itemSchema>;

/** A page of items (a conversation's, a response's input). */
export const itemListSchema = listOf(itemSchema, "ItemList");

/**
 * A reasoning item with its reasoning also as its summary, for a request that
 * asked for summaries (`reasoning.summary`). A chat-completions upstream sends
 * its reasoning and no shorter summary of it, so the summary is the whole text
 * (whatever level was asked): clients that read only summaries, as the AI
 * SDK's OpenAI provider does, still see it. Other items are as they are.
 */
export function withReasoningSummary(item: Item): Item {
  if (item.type !== "reasoning") return item;
  const text = item.content.map((c) => c.text).join("");
  return { ...item, summary: text ? [{ type: "summary_text", text }] : [] };
}

// ---------------------------------------------------------------- item ids

const MESSAGE_PREFIX = "msg_";

/** The row id's part after `msg_`: what a reasoning or function-call item id is built on. */
const suffixOf = (messageId: string): string => messageId.slice(MESSAGE_PREFIX.length);

export const reasoningItemId = (messageId: string): string => `rs_${suffixOf(messageId)}`;
export const functionCallItemId = (messageId: string, index: number): string => `fc_${suffixOf(messageId)}_${index}`;

export type ItemPart = "message" | "reasoning" | { call: number };

const ROW_SUFFIX = /^[0-7][0-9a-hjkmnp-tv-z]{25}$/;

/** Which row (and which part of it) an item id names; null for an id that is not one of ours. */
export function parseItemId(id: string): { messageId: string; part: ItemPart } | null {
  const [prefix, suffix, index, ...rest] = id.split("_");
  if (suffix === undefined || !ROW_SUFFIX.test(suffix) || rest.length > 0) return null;
  const messageId = `${MESSAGE_PREFIX}${suffix}`;
  if (prefix === "msg" && index === undefined) return { messageId, part: "message" };
  if (prefix === "rs" && index === undefined) return { messageId, part: "reasoning" };
  if (prefix === "fc" && index !== undefined && /^(0|[1-9]\d{0,4})$/.test(index)) return { messageId, part: { call: Number(index) } };
  return null;
}

// ---------------------------------------------------------------- rows → items

/** An item's status from its row's: a reply in flight is in progress; one that ended short of finishing is incomplete. */
export function itemStatusOf(row: Pick<MessageRow, "status" | "finishReason">): ItemStatus {
  if (row.status === "queued" || row.status === "in_progress") return "in_progress";
  if (row.status === "completed") return row.finishReason === "length" ? "incomplete" : "completed";
  return "incomplete";
}

export const LOGPROBS_INCLUDE = "message.output_text.logprobs";

/** Stored chat-completions logprobs (`{content: [...]}`) as output_text's; anything else (another server's shape) as none. */
export function responsesLogprobs(stored: unknown): Logprob[] {
  const entries = (stored as { content?: unknown } | null)?.content;
  if (!Array.isArray(entries)) return [];
  const asBytes = (b: unknown): number[] => (Array.isArray(b) ? b.filter((n): n is number => Number.isInteger(n)) : []);
  return entries
    .filter((e): e is Record<string, unknown> => typeof e === "object" && e !== null && typeof (e as { token?: unknown }).token === "string")
    .map((e) => ({
      token: e.token as string,
      logprob: typeof e.logprob === "number" ? e.logprob : 0,
      bytes: asBytes(e.bytes),
      top_logprobs: (Array.isArray(e.top_logprobs) ? e.top_logprobs : [])
        .filter((t): t is Record<string, unknown> => typeof t === "object" && t !== null && typeof (t as { token?: unknown }).token === "string")
        .map((t) => ({ token: t.token as string, logprob: typeof t.logprob === "number" ? t.logprob : 0, bytes: asBytes(t.bytes) })),
    }));
}

type RowView = Pick<
  MessageRow,
  "id" | "role" | "content" | "parts" | "toolCalls" | "toolCallId" | "reasoning" | "logprobs" | "status" | "finishReason"
>;

/** A user-side row's content as input parts: its parts as given, or its text as one part. */
function inputParts(row: RowView): MessageItem["content"] {
  if (!row.parts) return [{ type: "input_text", text: row.content }];
  return (row.parts as ContentPart[]).map((p) =>
    p.type === "image_url"
      ? { type: "input_image" as const, image_url: p.image_url.url, detail: p.image_url.detail ?? "auto" }
      : { type: "input_text" as const, text: p.text },
  );
}

/**
 * The items a stored message stands for: a user, system or developer row is
 * one message item; a tool row one function_call_output; an assistant row its
 * reasoning, its message (when it has text, or nothing else) and one
 * function_call per tool call, in that order.
 */
export function messageToItems(row: RowView, opts: { include?: readonly string[] } = {}): Item[] {
  const status = itemStatusOf(row);
  if (row.role === "tool") {
    const output = row.parts ? (row.parts as ContentPart[]).map((p) => ({ type: "input_text" as const, text: p.type === "text" ? p.text : "" })) : row.content;
    return [{ id: row.id, type: "function_call_output", call_id: row.toolCallId ?? "", output, status }];
  }
  if (row.role !== "assistant") return [{ id: row.id, type: "message", status, role: row.role, content: inputParts(row) }];

  const items: Item[] = [];
  if (row.reasoning) {
    items.push({ id: reasoningItemId(row.id), type: "reasoning", summary: [], content: [{ type: "reasoning_text", text: row.reasoning }] });
  }
  const calls = (row.toolCalls as ToolCall[] | null) ?? [];
  if (row.content || calls.length === 0) {
    const withLogprobs = opts.include?.includes(LOGPROBS_INCLUDE) && row.logprobs != null;
    const content = row.content
      ? [{ type: "output_text" as const, text: row.content, annotations: [], ...(withLogprobs ? { logprobs: responsesLogprobs(row.logprobs) } : {}) }]
      : [];
    items.push({ id: row.id, type: "message", status, role: "assistant", content });
  }
  for (const [index, call] of calls.entries()) {
    items.push({
      id: functionCallItemId(row.id, index),
      type: "function_call",
      call_id: call.id,
      name: call.function.name,
      arguments: call.function.arguments,
      status,
    });
  }
  return items;
}

// ---------------------------------------------------------------- items → messages

/** The ids an input's item references name, for the caller to fetch (see inputItemsToMessages' `references`). */
export function referencedItemIds(items: readonly InputItem[]): string[] {
  return [...new Set(items.flatMap((item) => (item.type === "item_reference" ? [item.id] : [])))];
}

/** What an item is once references are resolved: an input item, or a stored item it named. */
type ResolvedItem = Exclude<InputItem, { type: "item_reference" }> | Item;

const joinTexts = (texts: string[], separator = ""): string => texts.join(separator);

/** The text parts of an assistant message's content (refusals as text: chat history has no refusal part). */
function assistantText(content: unknown): string {
  if (typeof content === "string") return content;
  return joinTexts(
    (content as { type: string; text?: string; refusal?: string }[]).map((p) => (p.type === "refusal" ? (p.refusal ?? "") : (p.text ?? ""))),
  );
}

function reasoningText(item: Extract<ResolvedItem, { type: "reasoning" }>): string {
  if (item.content?.length) return joinTexts(item.content.map((c) => c.text));
  return joinTexts(
    item.summary.map((s) => s.text),
    "\n\n",
  );
}

/** A user, system or developer message's content as stored: a string as is, parts as chat parts. */
function givenUserSide(role: "user" | "system" | "developer", content: unknown): GivenMessage {
  if (typeof content === "string") return { role, content, parts: null };
  const parts: ContentPart[] = (content as { type: string; text?: string; image_url?: string | null; detail?: string | null }[]).map((p) =>
    p.type === "input_image"
      ? {
          type: "image_url",
          image_url: { url: p.image_url ?? "", ...(p.detail ? { detail: p.detail as "auto" | "low" | "high" } : {}) },
        }
      : { type: "text", text: p.text ?? "" },
  );
  const text = joinTexts(parts.flatMap((p) => (p.type === "text" ? [p.text] : [])));
  // One text part (what the AI SDK sends for every message) is a plain string upstream, as most chat templates
  // of open models expect; its item reads back as the same one input_text part.
  if (parts.length === 1 && parts[0]?.type === "text") return { role, content: text, parts: null };
  return { role, content: text, parts };
}

/** Where an assistant message being folded stands: what it already has decides whether the next item joins it. */
interface AssistantDraft {
  message: GivenMessage & { role: "assistant" };
  reasoning: string[];
  hasText: boolean;
  calls: ToolCall[];
}

/**
 * The messages a turn stores for the input items. Consecutive reasoning,
 * assistant message and function_call items make one assistant message, as a
 * chat-completions upstream wants a turn's calls: reasoning, then text, then
 * calls. An item that would go before what the message already has (a second
 * text, a text or reasoning after its calls... except reasoning between calls,
 * which joins) starts the next assistant message.
 *
 * `references`: the stored items the input's item_references name (by item
 * id); a reference to one not given is a 404 naming `input.N.id`.
 */
export function inputItemsToMessages(items: readonly InputItem[], opts: { references: ReadonlyMap<string, Item> }): GivenMessage[] {
  const out: GivenMessage[] = [];
  let draft: AssistantDraft | null = null;
  const flush = () => {
    if (!draft) return;
    const m = draft.message;
    if (draft.reasoning.length) m.reasoning = joinTexts(draft.reasoning, "\n\n");
    if (draft.calls.length) m.tool_calls = draft.calls;
    out.push(m);
    draft = null;
  };
  const assistant = (): AssistantDraft => (draft ??= { message: { role: "assistant", content: "" }, reasoning: [], hasText: false, calls: [] });

  for (const [index, given] of items.entries()) {
    let item: ResolvedItem;
    if (given.type === "item_reference") {
      const found = opts.references.get(given.id);
      if (!found) throw new ItemNotFoundError(given.id, `input.${index}.id`);
      item = found;
    } else {
      item = given;
    }
    switch (item.type) {
      case "reasoning": {
        const current = draft as AssistantDraft | null;
        if (current?.hasText) flush();
        const text = reasoningText(item);
        if (text) assistant().reasoning.push(text);
        else assistant();
        break;
      }
      case "function_call": {
        assistant().calls.push({ id: item.call_id, type: "function", function: { name: item.name, arguments: item.arguments } });
        break;
      }
      case "message": {
        if (item.role === "assistant") {
          const current = draft as AssistantDraft | null;
          if (current && (current.hasText || current.calls.length)) flush();
          const d = assistant();
          d.message.content = assistantText(item.content);
          d.hasText = true;
        } else {
          flush();
          out.push(givenUserSide(item.role, item.content));
        }
        break;
      }
      case "function_call_output": {
        flush();
        const output = item.output;
        if (typeof output === "string") out.push({ role: "tool", tool_call_id: item.call_id, content: output, parts: null });
        else {
          const parts = (output as { text?: string }[]).map((p) => ({ type: "text" as const, text: p.text ?? "" }));
          out.push({ role: "tool", tool_call_id: item.call_id, content: joinTexts(parts.map((p) => p.text)), parts });
        }
        break;
      }
    }
  }
  flush();
  return out;
}

/** An item_reference naming no item the caller can see: a 404, as OpenAI answers an unknown id. */
export class ItemNotFoundError extends NotFoundError {
  constructor(id: string, param: string | null) {
    super("item", id, param);
  }
}
