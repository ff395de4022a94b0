import { messageTokens } from "../context/tokens.ts";
import type { messages, MessageRole, StoredContentPart, StoredToolCall } from "../db/schema.ts";
import { contentText, imageParts, type ChatMessageInput, type ContentPart, type ToolCall } from "./chat-message.ts";
import { newMessageId } from "./ids.ts";

/** A message a client gives, as stored: `content` is its text (parts' texts joined), `parts` the parts as given. */
export interface GivenMessage {
  role: MessageRole;
  content: string;
  parts?: ContentPart[] | null | undefined;
  name?: string | undefined;
  tool_calls?: ToolCall[] | undefined;
  tool_call_id?: string | undefined;
  /** An imported assistant turn's reasoning_content. */
  reasoning?: string | undefined;
  metadata?: Record<string, string> | undefined;
}

/** A validated chat message (chat-message.ts) as it is given to a turn. */
export function givenMessage(m: ChatMessageInput, metadata?: Record<string, string>): GivenMessage {
  return {
    role: m.role,
    content: contentText(m.content),
    parts: Array.isArray(m.content) ? m.content : null,
    name: m.name,
    tool_calls: m.tool_calls,
    tool_call_id: m.tool_call_id,
    reasoning: m.reasoning_content,
    metadata,
  };
}

/** Tool results (by index) whose tool_call_id answers no call made by an earlier message of `given`. */
export function toolResultsWithoutCall(given: GivenMessage[]): { index: number; id: string }[] {
  const asked = new Set<string>();
  const unanswered: { index: number; id: string }[] = [];
  for (const [index, m] of given.entries()) {
    for (const call of m.tool_calls ?? []) asked.add(call.id);
    if (m.role === "tool" && m.tool_call_id !== undefined && !asked.has(m.tool_call_id)) unanswered.push({ index, id: m.tool_call_id });
  }
  return unanswered;
}

/**
 * What an image costs in a prompt, counted without looking at it: OpenAI's
 * figure for a 1024×1024 image at `detail: high` (85 + 4 tiles × 170). Low
 * detail costs 85, larger images more; the reply reserve absorbs the difference.
 */
export const IMAGE_TOKENS = 765;

/**
 * Tokens a message takes in the prompt: its text, its tool calls' names and
 * arguments and the id a tool result answers (as text), a fixed estimate per
 * image. Reasoning is not counted: it is not sent back unless a turn asks.
 */
export function givenMessageTokens(m: Pick<GivenMessage, "content" | "parts" | "name" | "tool_calls" | "tool_call_id">): number {
  const text = [
    m.content,
    m.name ?? "",
    m.tool_call_id ?? "",
    ...(m.tool_calls ?? []).flatMap((c) => [c.function.name, c.function.arguments]),
  ]
    .filter((s) => s.length > 0)
    .join("\n");
  return messageTokens(text) + imageParts(m.parts).length * IMAGE_TOKENS;
}

/** Rows for messages a client gives (user, system, tool, or an imported assistant turn): complete as stored. */
export function completedMessageRows(
  given: GivenMessage[],
  at: { tenantId: string; conversationId: string; firstSeq: number; now: Date; historyTokensBefore: number },
): (typeof messages.$inferInsert & { tokens: number; historyTokens: number })[] {
  let running = at.historyTokensBefore;
  return given.map((m, i) => {
    const tokens = givenMessageTokens(m);
    running += tokens;
    return {
      id: newMessageId(),
      tenantId: at.tenantId,
      conversationId: at.conversationId,
      seq: at.firstSeq + i,
      role: m.role,
      content: m.content,
      // Left out when absent (the column's default, null): a plain message binds no five nulls per insert.
      ...(m.parts ? { parts: m.parts as StoredContentPart[] } : {}),
      ...(m.name !== undefined ? { name: m.name } : {}),
      ...(m.tool_calls ? { toolCalls: m.tool_calls as StoredToolCall[] } : {}),
      ...(m.tool_call_id !== undefined ? { toolCallId: m.tool_call_id } : {}),
      ...(m.reasoning !== undefined ? { reasoning: m.reasoning } : {}),
      status: "completed" as const,
      metadata: m.metadata ?? {},
      tokens,
      historyTokens: running,
      createdAt: at.now,
      completedAt: at.now,
    };
  });
}
