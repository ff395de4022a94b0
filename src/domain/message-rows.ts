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
  at: { tenantId: string; conversationId: string; firstSeq: number; now: Date },
): (typeof messages.$inferInsert)[] {
  return given.map((m, i) => ({
    id: newMessageId(),
    tenantId: at.tenantId,
    conversationId: at.conversationId,
    seq: at.firstSeq + i,
    role: m.role,
    content: m.content,
    status: "completed" as const,
    metadata: m.metadata ?? {},
    createdAt: at.now,
    completedAt: at.now,
  }));
}
