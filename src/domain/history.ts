import { sql } from "drizzle-orm";
import type { ContextWindows } from "../context/context-windows.ts";
import { ContextLengthExceededError, turnBudget } from "../context/turn-budget.ts";
import type { Database } from "../db/client.ts";
import { prepared, preparedSql } from "../db/statements.ts";
import { messages, type ConversationRow, type MessageRow } from "../db/schema.ts";
import type { ChatMessage } from "../providers/types.ts";
import { summaryMessage } from "./summary-message.ts";
import { turnSettings } from "./turn-settings.ts";

/**
 * Whether an earlier message is part of what the model sees. A failed reply is
 * left out (the model did not really say it); a cancelled one keeps what it
 * had said, as the user saw it. Messages marked `failed` are the turn of a
 * reply that failed before producing anything (failed-turns.ts): left out too.
 */
export function belongsInHistory(m: Pick<MessageRow, "role" | "status" | "content">): boolean {
  if (m.status === "failed") return false;
  if (m.role !== "assistant") return true;
  return m.status === "completed" || (m.status === "cancelled" && m.content.length > 0);
}

/** belongsInHistory as a condition on stored rows, for queries that read only the history (keep the two alike). */
export const inHistorySql = sql`(${messages.status} <> 'failed' and (${messages.role} <> 'assistant' or ${messages.status} = 'completed' or (${messages.status} = 'cancelled' and ${messages.content} <> '')))`;

/** The fields a plain chat message has none of: absent (or null) on most rows. */
type RichFields = Partial<Pick<MessageRow, "parts" | "name" | "toolCalls" | "toolCallId" | "reasoning">>;
type HistoryRow = Pick<MessageRow, "role" | "status" | "content"> & RichFields;

/**
 * The rich fields in one column, null when a message has none: a turn reads its whole window, and each
 * column read costs a decode per row in postgres.js and drizzle (five null columns per message cost a
 * plain chat's turns measurably). json_build_object embeds the json columns' text as stored (key order kept).
 */
const richFieldsSql = sql<RichFields | null>`case when ${messages.parts} is null and ${messages.name} is null and ${messages.toolCalls} is null and ${messages.toolCallId} is null and ${messages.reasoning} is null then null else json_build_object('parts', ${messages.parts}, 'name', ${messages.name}, 'toolCalls', ${messages.toolCalls}, 'toolCallId', ${messages.toolCallId}, 'reasoning', ${messages.reasoning}) end`;

/**
 * A stored message as it is sent upstream: text-only content as the plain
 * string it was, parts as given, a reply that only called tools with
 * `content: null`. Reasoning goes back only when the turn asks
 * (`send_reasoning: true`, Parley's own param); a cancelled reply's tool calls
 * never do (they may be cut off, and nothing answers them).
 */
export function toChatMessage(m: HistoryRow, opts: { sendReasoning: boolean }): ChatMessage {
  // Most messages are plain text: no spreads, no checks of fields they lack.
  if (m.parts == null && m.name == null && m.toolCalls == null && m.toolCallId == null && m.reasoning == null) {
    return { role: m.role, content: m.content };
  }
  const toolCalls = m.role === "assistant" && m.status === "completed" && m.toolCalls?.length ? m.toolCalls : null;
  const content = m.parts ?? (toolCalls && m.content === "" ? null : m.content);
  return {
    role: m.role,
    content: content as ChatMessage["content"],
    ...(m.name != null ? { name: m.name } : {}),
    ...(toolCalls ? { tool_calls: toolCalls } : {}),
    ...(m.role === "tool" && m.toolCallId != null ? { tool_call_id: m.toolCallId } : {}),
    ...(opts.sendReasoning && m.role === "assistant" && m.reasoning ? { reasoning_content: m.reasoning } : {}),
  };
}

/**
 * The messages without tool results whose call is not sent with them (the window starts after the call, or
 * the summary holds it): upstreams refuse a `tool` message that answers no earlier `tool_calls`.
 */
function withoutOrphanedToolResults<T extends HistoryRow>(sent: T[]): T[] {
  if (!sent.some((m) => m.role === "tool")) return sent;
  const calls = new Set<string>();
  return sent.filter((m) => {
    if (m.role === "assistant" && m.status === "completed") for (const c of m.toolCalls ?? []) calls.add(c.id);
    return m.role !== "tool" || m.toolCallId == null || calls.has(m.toolCallId);
  });
}

type WindowRow = HistoryRow & Pick<MessageRow, "tokens">;

interface HistoryWindow {
  /** The running token total of the newest message before the reply (0: none). */
  total: number;
  /** That message's own tokens. */
  newestTokens: number;
  /** Where the messages sent start. */
  fromSeq: number;
  /** The messages from there to the reply, in seq order. */
  sent: WindowRow[];
}

type WindowStatementRow = {
  total: string;
  newest_tokens: number;
  from_seq: number;
  role: MessageRow["role"];
  status: MessageRow["status"];
  content: string;
  tokens: number;
  rich: RichFields | null;
};

/**
 * The window's statements, built once per database handle (src/db/statements.ts): `strict` and budgeted
 * differ in where the window may start, and `newest` reads the newest message alone.
 * Placeholders: conversationId, replySeq, budget, fromSeq (`newest`: the first two).
 */
const windowStatements = prepared((db: Database) => {
  const replySeq = sql`${sql.placeholder("replySeq")}::int`;
  const budget = sql`${sql.placeholder("budget")}::bigint`;
  const before = sql`${messages.conversationId} = ${sql.placeholder("conversationId")} and ${messages.seq} < ${replySeq}`;
  const newest = sql`select ${messages.historyTokens} as total, ${messages.tokens} as tokens from ${messages} where ${before} order by ${messages.seq} desc limit 1`;
  // The suffix after message m holds total - m.historyTokens tokens: start after the first m where that fits.
  const budgetedCut = sql`coalesce((select ${messages.seq} from ${messages} where ${before} and ${messages.historyTokens} >= newest.total - ${budget} order by ${messages.historyTokens}, ${messages.seq} limit 1), ${replySeq} - 1) + 1`;
  // Materialized, so the bounds are computed once, not per message; the messages come in index order, unsorted.
  const window = (cut: ReturnType<typeof sql>) => sql`with newest as (${newest}), bounds as materialized (
      select total, tokens, greatest(case when total <= ${budget} then 1 else ${cut} end, ${sql.placeholder("fromSeq")}::int) as from_seq from newest
    )
    select (select total from bounds) as total, (select tokens from bounds) as newest_tokens, (select from_seq from bounds) as from_seq,
      ${messages.role} as role, ${messages.status} as status, ${messages.content} as content, ${messages.tokens} as tokens, ${richFieldsSql} as rich
    from ${messages} where ${before} and ${messages.seq} >= (select from_seq from bounds)
    order by ${messages.seq}`;
  return {
    budgeted: preparedSql<WindowStatementRow>(db, "history_window", window(budgetedCut)),
    strict: preparedSql<WindowStatementRow>(db, "history_window_strict", window(replySeq)),
    newest: preparedSql<{ total: string; tokens: number }>(db, "history_newest", newest),
  };
});

/**
 * The window of messages a reply is sent, in one statement (a turn's reads are round trips before its
 * first token): the newest message before the reply gives the running total; over `budget`, the window
 * starts after the first message whose suffix fits (none under `strict`: the caller refuses the turn),
 * and never before `fromSeq`. The newest message before the reply, not the one at seq - 1: a deleted
 * item leaves a gap in seqs. An empty window (no message before the reply, or one that refuses the turn)
 * reads the newest message again, on its own.
 */
async function readWindow(
  db: Database,
  conversationId: string,
  replySeq: number,
  opts: { budget: number; strict: boolean; fromSeq: number },
): Promise<HistoryWindow> {
  const statements = windowStatements(db);
  const rows = await (opts.strict ? statements.strict : statements.budgeted).execute({
    conversationId,
    replySeq,
    budget: opts.budget,
    fromSeq: opts.fromSeq,
  });
  const [first] = rows;
  if (!first) {
    const [last] = await statements.newest.execute({ conversationId, replySeq });
    return { total: Number(last?.total ?? 0), newestTokens: last?.tokens ?? 0, fromSeq: opts.fromSeq, sent: [] };
  }
  const sent: WindowRow[] = [];
  for (const r of rows) {
    const row = { role: r.role, status: r.status, content: r.content, tokens: r.tokens };
    sent.push(r.rich === null ? row : { ...row, ...r.rich });
  }
  return { total: Number(first.total), newestTokens: first.newest_tokens, fromSeq: first.from_seq, sent };
}

export interface BuiltHistory {
  messages: ChatMessage[];
  /** Earlier messages sent, and the tokens sent with the system prompt (and summary). */
  context: { messages: number; tokens: number };
  /** `summarize`: messages up to this seq were left out and are not in the summary yet. */
  unsummarizedThroughSeq: number | null;
}

/**
 * The messages a reply is generated from: the conversation's system prompt,
 * then the newest earlier messages that fit the model's window, whole and in
 * seq order. The running token total on each message finds where that starts
 * with one index probe, so only the messages sent are read, however long the
 * conversation. Under `strict` a history that does not fit is an error.
 */
export async function buildHistory(
  deps: { db: Database; contextWindows: ContextWindows },
  conversation: Pick<ConversationRow, "id" | "system" | "params" | "contextStrategy" | "summary" | "summaryThroughSeq" | "summaryTokens">,
  reply: Pick<MessageRow, "seq" | "params">,
  model: string,
  /** Tokens of messages sent after this history that are not stored (a `store: false` response's input): the history fits in what they leave. */
  pendingTokens = 0,
): Promise<BuiltHistory> {
  const { db } = deps;
  const params = { ...conversation.params, ...(reply.params ?? {}) };
  const settings = turnSettings(conversation, params);
  const budget = turnBudget(model, deps.contextWindows.forModel(model), settings.system, params);
  const summarizing = settings.contextStrategy === "summarize";
  const summary = summarizing && conversation.summary !== null ? conversation.summary : null;
  if (summary !== null) budget.historyTokens -= conversation.summaryTokens;
  budget.historyTokens -= pendingTokens;
  const strict = settings.contextStrategy === "strict";
  const window = await readWindow(db, conversation.id, reply.seq, {
    budget: budget.historyTokens,
    strict,
    // What the summary holds is not sent again.
    fromSeq: summary !== null ? conversation.summaryThroughSeq + 1 : 1,
  });
  const { total, fromSeq, sent } = window;
  if (total > budget.historyTokens && strict) {
    throw new ContextLengthExceededError(budget, { what: "The conversation's history", tokens: total }, null);
  }
  const included = sent.filter(belongsInHistory);
  if (included.length === 0 && total > 0) {
    // Not even the newest message fits (the model or system prompt changed since it was accepted).
    throw new ContextLengthExceededError(budget, { what: "The newest message", tokens: window.newestTokens }, null);
  }

  const history: ChatMessage[] = [];
  if (settings.system) history.push({ role: "system", content: settings.system });
  if (summary !== null) history.push(summaryMessage(summary));
  const sendReasoning = params.send_reasoning === true;
  const answered = withoutOrphanedToolResults(included);
  for (const m of answered) history.push(toChatMessage(m, { sendReasoning }));
  const tokens =
    budget.systemTokens + (summary !== null ? conversation.summaryTokens : 0) + answered.reduce((n, m) => n + m.tokens, 0);
  const unsummarizedThroughSeq = summarizing && fromSeq - 1 > conversation.summaryThroughSeq ? fromSeq - 1 : null;
  return { messages: history, context: { messages: answered.length, tokens }, unsummarizedThroughSeq };
}
