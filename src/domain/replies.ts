import { and, desc, eq, inArray, lt, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Database } from "../db/client.ts";
import {
  conversations,
  messages,
  type ConversationRow,
  type MessageRow,
  type StoredError,
  type StoredToolCall,
  type StoredUsage,
} from "../db/schema.ts";
import { endsTurnUnsent, leaveTurnOutOfHistory } from "./failed-turns.ts";
import { belongsInHistory } from "./history.ts";
import { givenMessageTokens } from "./message-rows.ts";

type Transaction = Parameters<Parameters<Database["transaction"]>[0]>[0];

/** A reply is in flight while it is in one of these. */
export const inFlightStatuses = ["queued", "in_progress"] as const;

/** Whether a message's status is one of a reply in flight. */
export const isInFlight = (status: string): boolean => (inFlightStatuses as readonly string[]).includes(status);

/**
 * "The message is a reply in flight" as SQL, with the statuses written as literals rather than bound: the
 * planner matches a partial index's predicate (messages_one_reply_in_flight_idx) only against constants, so
 * a prepared statement's generic plan with bound statuses scanned every message of the conversation.
 */
export const replyInFlightSql = sql`${messages.status} in ('queued', 'in_progress')`;

/**
 * queued → in_progress, as a new attempt, and the reply's conversation (null
 * once deleted), in one statement: the worker's first round trip after it
 * takes a job. The row's `attempt` is bumped and the run that took it keeps
 * that number (its writes are checked against it). Null when the reply is not
 * this tenant's or no longer in flight (finished, cancelled, deleted).
 */
export async function startReplyAttempt(
  db: Database,
  tenantId: string,
  replyId: string,
): Promise<{ reply: MessageRow; conversation: ConversationRow | null } | null> {
  const started = db.$with("started").as(
    db
      .update(messages)
      .set({ status: "in_progress", attempt: sql`${messages.attempt} + 1` })
      .where(and(eq(messages.id, replyId), eq(messages.tenantId, tenantId), replyInFlightSql))
      .returning(),
  );
  const [row] = await db.with(started).select().from(started).leftJoin(conversations, eq(conversations.id, started.conversationId));
  return row ? { reply: row.started, conversation: row.conversations } : null;
}

export type ReplyOutcome = (
  | { status: "completed"; content: string; finishReason: string; usage: StoredUsage | null }
  | { status: "failed"; content: string; error: StoredError }
  | { status: "cancelled"; content: string }
) &
  StreamedExtras & {
    /** What was sent for the reply, when its history was built. */
    context?: { messages: number; tokens: number } | undefined;
  };

/** What a reply streamed besides its text (see StreamedReply): stored as given, null when none. */
export interface StreamedExtras {
  toolCalls?: StoredToolCall[] | null | undefined;
  reasoning?: string | null | undefined;
  logprobs?: unknown;
}

/**
 * Stores how a reply ended, once: only a reply still in flight changes, so a
 * late or repeated writer (a cancelled reply's worker, a retried job) cannot
 * overwrite the end that was stored first. With `attempt`, only that run's
 * row changes: a run whose reply was taken by a newer run stores nothing.
 * Cancel, delete and the sweep pass none: they win while the reply is in flight.
 * Returns null when nothing changed.
 * The reply's tokens are counted here, and its running total continues the
 * previous message's (a reply is the newest message while it is in flight).
 */
export async function finishReply(
  db: Database,
  replyId: string,
  outcome: ReplyOutcome,
  opts: { attempt?: number } = {},
): Promise<MessageRow | null> {
  const toolCalls = outcome.toolCalls?.length ? outcome.toolCalls : null;
  const tokens = givenMessageTokens({ content: outcome.content, tool_calls: toolCalls ?? undefined });
  const counted = belongsInHistory({ role: "assistant", status: outcome.status, content: outcome.content }) ? tokens : 0;
  const previous = alias(messages, "previous");
  const storeEnd = (on: Database | Transaction) => {
    const ended = on.$with("ended").as(
      on
        .update(messages)
        .set({
          status: outcome.status,
          content: outcome.content,
          toolCalls,
          reasoning: outcome.reasoning || null,
          logprobs: outcome.logprobs ?? null,
          finishReason: outcome.status === "completed" ? outcome.finishReason : null,
          usage: outcome.status === "completed" ? outcome.usage : null,
          error: outcome.status === "failed" ? outcome.error : null,
          tokens,
          historyTokens: sql`coalesce((${on
            .select({ total: previous.historyTokens })
            .from(previous)
            .where(and(eq(previous.conversationId, messages.conversationId), lt(previous.seq, messages.seq)))
            .orderBy(desc(previous.seq))
            .limit(1)}), 0) + ${counted}`,
          ...(outcome.context ? { contextMessages: outcome.context.messages, contextTokens: outcome.context.tokens } : {}),
          completedAt: sql`now()`,
        })
        .where(
          and(
            eq(messages.id, replyId),
            replyInFlightSql,
            opts.attempt === undefined ? undefined : eq(messages.attempt, opts.attempt),
          ),
        )
        .returning(),
    );
    // The conversation's `updated_at` in the same statement, one round trip less before the end is announced.
    // It is informational, so a conversation locked right now (a turn being appended, which sets it anyway; a
    // delete) is skipped, never waited for: waiting here, holding the reply's row, would take the two locks in
    // the opposite order to a delete (conversation, then its replies) and could deadlock with it.
    const toTouch = on
      .select({ id: conversations.id })
      .from(conversations)
      .where(inArray(conversations.id, on.select({ id: ended.conversationId }).from(ended)))
      .for("update", { skipLocked: true });
    const touched = on.$with("touched").as(on.update(conversations).set({ updatedAt: sql`now()` }).where(inArray(conversations.id, toTouch)));
    return on.with(ended, touched).select().from(ended);
  };
  // A reply that failed with nothing to show takes its turn out of history with it, in one transaction.
  const [row] = endsTurnUnsent(outcome)
    ? await db.transaction(async (tx) => {
        const [ended] = await storeEnd(tx);
        return ended ? [await leaveTurnOutOfHistory(tx, ended)] : [];
      })
    : await storeEnd(db);
  return row ?? null;
}
