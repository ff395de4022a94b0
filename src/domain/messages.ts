import { and, asc, desc, eq, gt, lt } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { messages, type MessageRow } from "../db/schema.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { InvalidRequestError, NotFoundError } from "./errors.ts";
import { getConversation } from "./conversations.ts";
import { looksLikeId } from "./ids.ts";
import { planPageScan, toPage, type Page, type PageQuery } from "./pagination.ts";
import { isInFlight } from "./replies.ts";
import { streamedReplyOf, type StreamedReply } from "./reply-delta.ts";

export interface MessageDeps {
  db: Database;
  replyEvents: ReplyEventLog;
}

export async function getMessage(
  deps: MessageDeps,
  tenantId: string,
  conversationId: string,
  messageId: string,
): Promise<MessageRow> {
  if (!looksLikeId("conv", conversationId)) throw new NotFoundError("conversation", conversationId);
  if (!looksLikeId("msg", messageId)) throw new NotFoundError("message", messageId);
  const [row] = await deps.db
    .select()
    .from(messages)
    .where(
      and(eq(messages.id, messageId), eq(messages.conversationId, conversationId), eq(messages.tenantId, tenantId)),
    );
  if (!row) {
    await getConversation(deps, tenantId, conversationId); // a missing conversation is the better 404
    throw new NotFoundError("message", messageId);
  }
  if (isInFlight(row.status)) {
    // Postgres gets the content when the reply ends; until then it is the deltas so far.
    const streamed = await streamedSoFar(deps.replyEvents, row.id);
    return { ...row, ...streamedColumns(streamed) };
  }
  return row;
}

/** A message by id alone, for a caller that has already checked whose it is; null once it is gone (deleted). */
export async function findMessage(db: Database, messageId: string): Promise<MessageRow | null> {
  const [row] = await db.select().from(messages).where(eq(messages.id, messageId));
  return row ?? null;
}

/** The deltas since the reply (last) started: a `message.reset` drops what came before it. */
export async function streamedSoFar(replyEvents: ReplyEventLog, replyId: string): Promise<StreamedReply> {
  return streamedReplyOf(await replyEvents.readAfter(replyId, null));
}

export const contentSoFar = async (replyEvents: ReplyEventLog, replyId: string): Promise<string> =>
  (await streamedSoFar(replyEvents, replyId)).content;

/** The history, oldest first by default, paged by seq. */
export async function listMessages(
  deps: Pick<MessageDeps, "db">,
  tenantId: string,
  conversationId: string,
  query: PageQuery,
): Promise<Page<MessageRow>> {
  await getConversation(deps, tenantId, conversationId);
  const cursorId = query.before ?? query.after;
  const cursorParam = query.before !== undefined ? "before" : "after";
  let cursorSeq: number | null = null;
  if (cursorId !== undefined) {
    const [cursor] = looksLikeId("msg", cursorId)
      ? await deps.db
          .select({ seq: messages.seq })
          .from(messages)
          .where(and(eq(messages.id, cursorId), eq(messages.conversationId, conversationId)))
      : [];
    if (!cursor) {
      throw new InvalidRequestError(`No message '${cursorId}' in this conversation to page from.`, cursorParam);
    }
    cursorSeq = cursor.seq;
  }
  const scan = planPageScan(query, query.order ?? "asc");
  const cmp = scan.comparator === "gt" ? gt : lt;
  const rows = await deps.db
    .select()
    .from(messages)
    .where(and(eq(messages.conversationId, conversationId), cursorSeq !== null ? cmp(messages.seq, cursorSeq) : undefined))
    .orderBy(scan.direction === "asc" ? asc(messages.seq) : desc(messages.seq))
    .limit(scan.take);
  return toPage(rows, scan);
}

/**
 * The columns a reply's stream fills in: content, tool calls, reasoning, logprobs (null when it carried none),
 * and when its first token came.
 */
export function streamedColumns(
  streamed: StreamedReply,
): Pick<MessageRow, "content" | "toolCalls" | "reasoning" | "logprobs" | "firstTokenAt"> {
  return {
    content: streamed.content,
    toolCalls: streamed.toolCalls,
    reasoning: streamed.reasoning || null,
    logprobs: streamed.logprobs,
    firstTokenAt: streamed.firstTokenMs === null ? null : new Date(streamed.firstTokenMs),
  };
}
