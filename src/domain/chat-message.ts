import { z } from "@hono/zod-openapi";
import { isStorableJson, storableText } from "./storable-json.ts";

/**
 * The one message model: the chat-completions message as users know it
 * (content a string or parts, tool calls, the id of the call a tool result
 * answers, a name, reasoning). The native API, the chat-completions wire and
 * the provider layer all take these schemas and types; nothing else defines
 * a message.
 */

export const chatRoles = ["system", "developer", "user", "assistant", "tool"] as const;
export type ChatRole = (typeof chatRoles)[number];

// Extra fields on parts and tool calls are kept as given (loose objects), so what a client sends reaches the upstream.
export const textPartSchema = z
  .looseObject({ type: z.literal("text"), text: storableText() })
  .openapi("TextPart");

const DATA_IMAGE_URL = /^data:image\/[a-z0-9.+-]+;base64,/i;

/** Only URLs the upstream fetches itself (https) or carries inline (a base64 data URL of an image); Parley never fetches one. */
export const isAcceptedImageUrl = (url: string): boolean => /^https:\/\//i.test(url) || DATA_IMAGE_URL.test(url);

export const imagePartSchema = z
  .looseObject({
    type: z.literal("image_url"),
    image_url: z.looseObject({
      url: storableText().refine(isAcceptedImageUrl, { message: "must be an https: URL or a data:image/…;base64, URL" }),
      detail: z.enum(["auto", "low", "high"]).optional(),
    }),
  })
  .openapi("ImagePart");

export const contentPartSchema = z
  .discriminatedUnion("type", [textPartSchema, imagePartSchema], {
    error: (issue) => (issue.code === "invalid_union" ? "must be a part of type `text` or `image_url`" : undefined),
  })
  .openapi("ContentPart");
export type TextPart = z.infer<typeof textPartSchema>;
export type ImagePart = z.infer<typeof imagePartSchema>;
export type ContentPart = z.infer<typeof contentPartSchema>;

export const toolCallSchema = z
  .looseObject({
    id: storableText().min(1),
    type: z.literal("function"),
    function: z.looseObject({ name: storableText().min(1), arguments: storableText() }),
  })
  .openapi("ToolCall", { description: "A call of one of the request's `tools`; `arguments` is the JSON text the model wrote." });
export type ToolCall = z.infer<typeof toolCallSchema>;

/** One streamed piece of a tool call, as OpenAI streams it: `index` says which call, the rest arrive once or in fragments. */
export const toolCallDeltaSchema = z
  .object({
    index: z.int().min(0),
    id: z.string().optional(),
    type: z.literal("function").optional(),
    function: z.object({ name: z.string().optional(), arguments: z.string().optional() }).optional(),
  })
  .openapi("ToolCallDelta");
export type ToolCallDelta = z.infer<typeof toolCallDeltaSchema>;

/**
 * A message's fields, for schemas that add their own (the native append, a
 * wire's message) and then check them with checkChatMessage. Zod cannot
 * extend an object that already has a refinement, hence shape and check apart.
 */
export const chatMessageShape = {
  role: z.enum(chatRoles),
  content: z.union([storableText(), z.array(contentPartSchema).min(1), z.null()]).optional(),
  name: storableText().optional(),
  tool_calls: z.array(toolCallSchema).min(1).optional(),
  tool_call_id: storableText().min(1).optional(),
  reasoning_content: storableText().optional(),
};

type ChatMessageFields = {
  role: ChatRole;
  content?: string | ContentPart[] | null | undefined;
  tool_calls?: ToolCall[] | undefined;
  tool_call_id?: string | undefined;
  reasoning_content?: string | undefined;
};

/** The rules between a message's fields (zod's superRefine): each issue names the field it is about. */
export function checkChatMessage(m: ChatMessageFields, ctx: z.RefinementCtx): void {
  const issue = (path: string, message: string) => ctx.addIssue({ code: "custom", path: [path], message });
  const noContent = m.content === null || m.content === undefined;
  // Parts and tool calls keep fields of their own, which the field schemas do not see.
  if (!isStorableJson(m)) issue("content", "must not contain NUL (\\u0000) characters, lone surrogates or numbers beyond ±1.8e308");
  if (m.role === "assistant") {
    if (noContent && !m.tool_calls) issue("content", "may be null (or left out) only on an assistant message with `tool_calls`");
  } else {
    if (noContent) issue("content", `is required on a \`${m.role}\` message`);
    if (m.tool_calls) issue("tool_calls", "is allowed only on an assistant message");
    if (m.reasoning_content !== undefined) issue("reasoning_content", "is allowed only on an assistant message");
  }
  if (m.role === "tool" && m.tool_call_id === undefined) issue("tool_call_id", "is required on a `tool` message: the id of the call it answers");
  if (m.role !== "tool" && m.tool_call_id !== undefined) issue("tool_call_id", "is allowed only on a `tool` message");
  if (m.role === "tool" && Array.isArray(m.content) && m.content.some((p) => p.type !== "text")) {
    issue("content", "a `tool` message may carry text parts only");
  }
  if (m.tool_calls) {
    const ids = new Set<string>();
    for (const [i, call] of m.tool_calls.entries()) {
      if (ids.has(call.id)) ctx.addIssue({ code: "custom", path: ["tool_calls", i, "id"], message: "repeats another call's id" });
      ids.add(call.id);
    }
  }
}

export const chatMessageSchema = z.object(chatMessageShape).superRefine(checkChatMessage).openapi("ChatMessage");
export type ChatMessageInput = z.infer<typeof chatMessageSchema>;

/** A message as it is sent to a provider: the same model, declared structurally on the provider side. */
export type { ChatMessage } from "../providers/types.ts";

/** The text of a message's content: a string as it is, parts' texts joined as they are (as the wire did before parts were kept), null as "". */
export function contentText(content: string | ContentPart[] | null | undefined): string {
  if (typeof content === "string") return content;
  if (!content) return "";
  return content
    .filter((p): p is TextPart => p.type === "text")
    .map((p) => p.text)
    .join("");
}

/** The image parts of a message's content. */
export const imageParts = (content: string | ContentPart[] | null | undefined): ImagePart[] =>
  Array.isArray(content) ? content.filter((p): p is ImagePart => p.type === "image_url") : [];

/** Bytes a data URL carries once decoded (from its base64 length); 0 for any other URL, which Parley never fetches (MAX_IMAGE_BYTES_PER_MESSAGE). */
export function dataUrlBytes(url: string): number {
  const match = DATA_IMAGE_URL.exec(url);
  if (!match) return 0;
  const data = url.slice(match[0].length).replace(/\s+/g, "");
  const padding = data.endsWith("==") ? 2 : data.endsWith("=") ? 1 : 0;
  return Math.max(0, Math.floor((data.length * 3) / 4) - padding);
}

