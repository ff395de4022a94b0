import { and, desc, eq, gte, lt, ne, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { messages, type MessageRow, type StoredError } from "../db/schema.ts";

/**
 * A turn whose reply failed before producing anything (no content, no tool
 * calls) is left out of history as if it had not been sent: the messages it
 * stored are marked `failed` (with an error naming the reply) and count no
 * tokens, so an SDK's retry of the same request, or the user's, does not
 * stack copies of them in what the next turn sends upstream.
 *
 * A turn's messages are the ones appendTurn stored with the reply in one
 * transaction: they share the reply's `created_at` (one timestamp for the
 * whole turn) and come right before it. A regenerated reply is newer than
 * the messages it answers, so its failure leaves them in history.
 */

type Transaction = Parameters<Parameters<Database["transaction"]>[0]>[0];

/** The error stored on each message of a turn left out of history. */
export const TURN_LEFT_OUT_CODE = "reply_failed";

/** Whether a reply's end leaves its turn out of history: it failed, and the model produced nothing that is kept. */
export function endsTurnUnsent(outcome: { status: string; content: string; toolCalls?: unknown[] | null | undefined }): boolean {
  return outcome.status === "failed" && outcome.content === "" && (outcome.toolCalls?.length ?? 0) === 0;
}

/** The newest message before `seq` that another request stored: the turn's messages are the ones after it. */
async function messageBeforeTurn(tx: Transaction, reply: Pick<MessageRow, "conversationId" | "seq" | "createdAt">) {
  const [before] = await tx
    .select({ seq: messages.seq, historyTokens: messages.historyTokens })
    .from(messages)
    .where(and(eq(messages.conversationId, reply.conversationId), lt(messages.seq, reply.seq), ne(messages.createdAt, reply.createdAt)))
    .orderBy(desc(messages.seq))
    .limit(1);
  return { seq: before?.seq ?? 0, historyTokens: before?.historyTokens ?? 0 };
}

/**
 * Marks the messages of a failed reply's turn `failed` and takes them out of
 * the running token totals (the reply is the conversation's newest message,
 * so nothing after it needs changing). Returns the reply as stored now.
 */
export async function leaveTurnOutOfHistory(tx: Transaction, reply: MessageRow): Promise<MessageRow> {
  const before = await messageBeforeTurn(tx, reply);
  if (before.seq + 1 < reply.seq) {
    const error: StoredError = {
      message: `Left out of history: the reply to this turn (${reply.id}) failed before producing anything.`,
      type: reply.error?.type ?? "server_error",
      code: TURN_LEFT_OUT_CODE,
    };
    await tx
      .update(messages)
      .set({ status: "failed", error, historyTokens: before.historyTokens })
      .where(and(eq(messages.conversationId, reply.conversationId), gte(messages.seq, before.seq + 1), lt(messages.seq, reply.seq)));
  }
  const [row] = await tx.update(messages).set({ historyTokens: before.historyTokens }).where(eq(messages.id, reply.id)).returning();
  return row ?? reply;
}

/**
 * Regenerate: the turn of a reply being replaced goes back into history (its
 * messages `completed` again, their running totals counted anew), so the new
 * reply answers it. A no-op unless the replaced reply had left its turn out.
 */
export async function restoreTurnToHistory(
  tx: Transaction,
  replaced: Pick<MessageRow, "conversationId" | "seq" | "createdAt" | "status" | "content">,
): Promise<void> {
  if (replaced.status !== "failed" || replaced.content !== "") return;
  const before = await messageBeforeTurn(tx, replaced);
  if (before.seq + 1 >= replaced.seq) return;
  await tx.execute(sql`
    update ${messages} m
    set status = 'completed', error = null, history_tokens = ${before.historyTokens} + turn.running
    from (
      select id, sum(tokens) over (order by seq) as running
      from ${messages}
      where conversation_id = ${replaced.conversationId} and seq > ${before.seq} and seq < ${replaced.seq}
    ) turn
    where m.id = turn.id and m.status = 'failed'`);
}
