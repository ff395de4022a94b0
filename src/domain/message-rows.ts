import { messageTokens } from "../context/tokens.ts";
import type { messages, MessageRole } from "../db/schema.ts";
import { newMessageId } from "./ids.ts";

export interface GivenMessage {
  role: MessageRole;
  content: string;
  metadata?: Record<string, string> | undefined;
}

/** Rows for messages a client gives (user, system, or an imported assistant turn): complete as stored. */
export function completedMessageRows(
  given: GivenMessage[],
  at: { tenantId: string; conversationId: string; firstSeq: number; now: Date; historyTokensBefore: number },
): (typeof messages.$inferInsert & { tokens: number; historyTokens: number })[] {
  let running = at.historyTokensBefore;
  return given.map((m, i) => {
    const tokens = messageTokens(m.content);
    running += tokens;
    return {
      id: newMessageId(),
      tenantId: at.tenantId,
      conversationId: at.conversationId,
      seq: at.firstSeq + i,
      role: m.role,
      content: m.content,
      status: "completed" as const,
      metadata: m.metadata ?? {},
      tokens,
      historyTokens: running,
      createdAt: at.now,
      completedAt: at.now,
    };
  });
}
