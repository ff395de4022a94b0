import { and, asc, eq, lt } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { messages, type ConversationRow, type MessageRow } from "../db/schema.ts";
import type { ChatMessage } from "../providers/types.ts";

/**
 * Whether an earlier message is part of what the model sees. A failed reply is
 * left out (the model did not really say it); a cancelled one keeps what it
 * had said, as the user saw it.
 */
function belongsInHistory(m: Pick<MessageRow, "role" | "status" | "content">): boolean {
  if (m.role !== "assistant") return true;
  return m.status === "completed" || (m.status === "cancelled" && m.content.length > 0);
}

/**
 * The messages a reply is generated from: the conversation's system prompt,
 * then every earlier message in seq order.
 */
export async function buildHistory(
  db: Database,
  conversation: Pick<ConversationRow, "id" | "system">,
  reply: Pick<MessageRow, "seq">,
): Promise<ChatMessage[]> {
  const earlier = await db
    .select({ role: messages.role, status: messages.status, content: messages.content })
    .from(messages)
    .where(and(eq(messages.conversationId, conversation.id), lt(messages.seq, reply.seq)))
    .orderBy(asc(messages.seq));
  const history: ChatMessage[] = [];
  if (conversation.system) history.push({ role: "system", content: conversation.system });
  for (const m of earlier) if (belongsInHistory(m)) history.push({ role: m.role, content: m.content });
  return history;
}
