import { and, desc, eq, inArray, lt, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Database } from "../db/client.ts";
import { jsonParam, prepared } from "../db/statements.ts";
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
 * queued → in_progress as a new attempt, and the reply's conversation (null once deleted), in one statement:
 * the worker's first round trip after it takes a job. Placeholders: replyId, tenantId, runAttempt.
 *
 * The attempt is the greater of the row's next and the job's run count (BullMQ's attemptsStarted, bumped in
 * Redis each time the job is taken). That lets the statement commit without waiting for its WAL flush
 * (synchronous_commit off for its own transaction only): ~2 ms of fsync off the path to the first token.
 * Why two runs still never share an attempt:
 * - Without a crash nothing differs: the commit is visible to every session, and the row's lock released, when
 *   it returns; only its flush waits (the WAL writer's next round, ≤ 3 × wal_writer_delay, or sooner: any later
 *   synchronous commit flushes all WAL before it, the reply's own end included).
 * - Postgres crashing in that window can take the bump back. The run holding the lost number still stores its
 *   end (finishReply refuses only a run older than the row's attempt), and a run that takes the job after it does not reuse the
 *   number: every run of a reply is a run of its one job (the job id is the reply id; the sweep queues
 *   one again only for a reply at attempt 0), so the row's attempt
 *   never exceeds the runs Redis counted before, and the later run's larger count is its attempt.
 * - A number could repeat only if Redis lost the job's count at the same moment (both stores losing their
 *   latest writes together). Redis would then have lost the old run's fence claim and lock too (written after
 *   the count), so that run is cut off at its next lock renewal (completions.ts), as after any lost lock.
 */
const startAttemptStatement = prepared((db: Database | Transaction) => {
  const started = db.$with("started").as(
    db
      .update(messages)
      .set({ status: "in_progress", attempt: sql`greatest(${messages.attempt} + 1, ${sql.placeholder("runAttempt")}::int)` })
      .where(and(eq(messages.id, sql.placeholder("replyId")), eq(messages.tenantId, sql.placeholder("tenantId")), replyInFlightSql))
      .returning(),
  );
  return (
    db
      .with(started)
      .select()
      .from(started)
      .leftJoin(conversations, eq(conversations.id, started.conversationId))
      // Set for this statement's own transaction (it runs alone: an implicit one) and read by its commit; the next
      // statement on the connection commits synchronously again. Evaluated for the row the update returned.
      .where(sql`set_config('synchronous_commit', 'off', true) = 'off'`)
      .prepare("start_reply_attempt")
  );
});

/**
 * Starts a new attempt at a reply (see startAttemptStatement): the row's `attempt` is bumped and the run that
 * took it keeps that number (its writes are checked against it). `runAttempt`: the job's run count
 * (JobRun.attempt). Null when the reply is not this tenant's or no longer in flight (finished, cancelled, deleted).
 */
export async function startReplyAttempt(
  db: Database | Transaction,
  tenantId: string,
  replyId: string,
  runAttempt: number,
): Promise<{ reply: MessageRow; conversation: ConversationRow | null } | null> {
  const [row] = await startAttemptStatement(db).execute({ replyId, tenantId, runAttempt });
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
  /** When the stored content's first token was streamed; absent or null: none was (stored as null). */
  firstTokenAt?: Date | null | undefined;
}

/**
 * Stores how a reply ended, once: only a reply still in flight changes, so a
 * late or repeated writer (a cancelled reply's worker, a retried job) cannot
 * overwrite the end that was stored first. With `attempt`, only that run's
 * row changes (or one whose bump a crash took back): a run whose reply was taken by a newer run stores nothing.
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
  const values: EndValues = {
    replyId,
    attempt: opts.attempt ?? null,
    status: outcome.status,
    content: outcome.content,
    toolCalls: jsonParam(toolCalls),
    reasoning: outcome.reasoning || null,
    logprobs: jsonParam(outcome.logprobs),
    finishReason: outcome.status === "completed" ? outcome.finishReason : null,
    usage: jsonParam(outcome.status === "completed" ? outcome.usage : null),
    error: jsonParam(outcome.status === "failed" ? outcome.error : null),
    tokens,
    counted,
    contextMessages: outcome.context?.messages ?? null,
    contextTokens: outcome.context?.tokens ?? null,
    firstTokenAt: outcome.firstTokenAt?.toISOString() ?? null,
  };
  // A reply that failed with nothing to show takes its turn out of history with it, in one transaction.
  const [row] = endsTurnUnsent(outcome)
    ? await db.transaction(async (tx) => {
        const [ended] = await storeEndStatement(tx).execute(values);
        return ended ? [await leaveTurnOutOfHistory(tx, ended)] : [];
      })
    : await storeEndStatement(db).execute(values);
  return row ?? null;
}

/** finishReply's placeholders: json columns as their text (or null), so a null is SQL's, not json's `null`. */
interface EndValues {
  [name: string]: unknown;
  replyId: string;
  /** null: any attempt's row (cancel, delete, the sweep). */
  attempt: number | null;
  status: ReplyOutcome["status"];
  content: string;
  toolCalls: string | null;
  reasoning: string | null;
  logprobs: string | null;
  finishReason: string | null;
  usage: string | null;
  error: string | null;
  tokens: number;
  counted: number;
  /** null: the columns keep what they hold (the outcome carries no context). */
  contextMessages: number | null;
  contextTokens: number | null;
  /** ISO time, or null; set with the content it belongs to, so a newer attempt's end replaces an older one's. */
  firstTokenAt: string | null;
}


/** finishReply's statement (see there), built once per handle or transaction; placeholders as in EndValues. */
const storeEndStatement = prepared((on: Database | Transaction) => {
  const p = sql.placeholder;
  const previous = alias(messages, "previous");
  const ended = on.$with("ended").as(
    on
      .update(messages)
      .set({
        status: sql`${p("status")}`,
        content: sql`${p("content")}`,
        toolCalls: sql`${p("toolCalls")}::json`,
        reasoning: sql`${p("reasoning")}`,
        logprobs: sql`${p("logprobs")}::json`,
        finishReason: sql`${p("finishReason")}`,
        usage: sql`${p("usage")}::jsonb`,
        error: sql`${p("error")}::jsonb`,
        tokens: sql`${p("tokens")}::int`,
        historyTokens: sql`coalesce((${on
          .select({ total: previous.historyTokens })
          .from(previous)
          .where(and(eq(previous.conversationId, messages.conversationId), lt(previous.seq, messages.seq)))
          .orderBy(desc(previous.seq))
          .limit(1)}), 0) + ${p("counted")}::bigint`,
        contextMessages: sql`coalesce(${p("contextMessages")}::int, ${messages.contextMessages})`,
        contextTokens: sql`coalesce(${p("contextTokens")}::int, ${messages.contextTokens})`,
        completedAt: sql`now()`,
        firstTokenAt: sql`${p("firstTokenAt")}::timestamptz`,
      })
      // No newer attempt has started: the row's attempt is this run's, or lower when a Postgres crash took
      // this run's bump back (startAttemptStatement), in which case it is still the newest run and stores its end.
      .where(and(eq(messages.id, p("replyId")), replyInFlightSql, sql`${messages.attempt} <= coalesce(${p("attempt")}::int, ${messages.attempt})`))
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
  return on.with(ended, touched).select().from(ended).prepare("finish_reply");
});
