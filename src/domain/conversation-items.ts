import { and, asc, desc, eq, gt, gte, lt, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { conversations, messages, type ConversationRow, type MessageRow, type StoredToolCall } from "../db/schema.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import type { ToolCall } from "./chat-message.ts";
import { getConversation } from "./conversations.ts";
import { ConversationBusyError, InvalidRequestError, NotFoundError } from "./errors.ts";
import { belongsInHistory } from "./history.ts";
import { looksLikeId } from "./ids.ts";
import { givenMessageTokens } from "./message-rows.ts";
import { streamedColumns, streamedSoFar } from "./messages.ts";
import type { Page } from "./pagination.ts";
import { isInFlight, replyInFlightSql } from "./replies.ts";

/**
 * The Conversations API's items are views of stored message rows: one row
 * may be several items (an assistant row: its reasoning, its text, each tool
 * call). How a row is shown is the HTTP layer's (the Responses dialect); the
 * domain is given it as `itemsOf` and pages, finds and deletes by rows.
 */

/** The items a row stands for, in order; each has an id that leads back to the row. */
export type ItemsOf<T extends { id: string }> = (row: MessageRow) => T[];

/** Which part of a row an item is: an assistant row's reasoning, its text (any other row: the whole row), one tool call. */
export type ItemPart = "message" | "reasoning" | { call: number };

/** An item id, and the row and part it names (as the item id scheme reads it). */
export interface ItemRef {
  itemId: string;
  messageId: string;
  part: ItemPart;
}

/** No item with this id in the conversation (404, naming the request field when it was one, like `after`). */
export class ConversationItemNotFoundError extends NotFoundError {
  constructor(itemId: string, param: string | null = null) {
    super("message", itemId, param);
    this.message = `No item found with id '${itemId}' in this conversation.`;
  }
}

export interface ItemPageQuery {
  limit: number;
  order: "asc" | "desc";
  /** The page starts after this item, in `order`; any item, a tool call of a row included. */
  after?: ItemRef | undefined;
}

/**
 * A page of the conversation's items. Rows are read by seq (a range of
 * messages_conversation_seq_idx from the cursor's row) and expanded; the
 * cursor row's items after the cursor come first. Reading stops once one
 * item past the page is known, so `has_more` is exact.
 */
export async function listConversationItems<T extends { id: string }>(
  deps: { db: Database },
  tenantId: string,
  conversationId: string,
  query: ItemPageQuery,
  itemsOf: ItemsOf<T>,
): Promise<Page<T>> {
  await getConversation(deps, tenantId, conversationId);
  const inOrder = (row: MessageRow) => (query.order === "asc" ? itemsOf(row) : itemsOf(row).reverse());
  const found: T[] = [];
  let cursorSeq: number | null = null;
  if (query.after) {
    const { itemId, messageId } = query.after;
    const row = await findRow(deps.db, tenantId, conversationId, messageId);
    const items = row ? inOrder(row) : [];
    const at = items.findIndex((item) => item.id === itemId);
    if (!row || at < 0) throw new ConversationItemNotFoundError(itemId, "after");
    found.push(...items.slice(at + 1));
    cursorSeq = row.seq;
  }
  const wanted = query.limit + 1;
  const cmp = query.order === "asc" ? gt : lt;
  // Every row is at least one item, so one read almost always does; the loop keeps has_more exact if not.
  while (found.length < wanted) {
    const take = wanted - found.length;
    const rows = await deps.db
      .select()
      .from(messages)
      .where(and(eq(messages.conversationId, conversationId), cursorSeq === null ? undefined : cmp(messages.seq, cursorSeq)))
      .orderBy(query.order === "asc" ? asc(messages.seq) : desc(messages.seq))
      .limit(take);
    for (const row of rows) found.push(...inOrder(row));
    const last = rows.at(-1);
    if (rows.length < take || !last) break;
    cursorSeq = last.seq;
  }
  const data = found.slice(0, query.limit);
  return { object: "list", data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: found.length > query.limit };
}

/** One item; a reply in flight shows its content so far (as the message does). */
export async function getConversationItem<T extends { id: string }>(
  deps: { db: Database; replyEvents: ReplyEventLog },
  tenantId: string,
  conversationId: string,
  ref: ItemRef,
  itemsOf: ItemsOf<T>,
): Promise<T> {
  const row = await findRow(deps.db, tenantId, conversationId, ref.messageId);
  if (!row) {
    await getConversation(deps, tenantId, conversationId); // a missing conversation is the better 404
    throw new ConversationItemNotFoundError(ref.itemId);
  }
  const shown = isInFlight(row.status) ? { ...row, ...streamedColumns(await streamedSoFar(deps.replyEvents, row.id)) } : row;
  const item = itemsOf(shown).find((i) => i.id === ref.itemId);
  if (!item) throw new ConversationItemNotFoundError(ref.itemId);
  return item;
}

async function findRow(db: Database, tenantId: string, conversationId: string, messageId: string): Promise<MessageRow | undefined> {
  if (!looksLikeId("conv", conversationId)) throw new NotFoundError("conversation", conversationId);
  if (!looksLikeId("msg", messageId)) return undefined;
  const [row] = await db
    .select()
    .from(messages)
    .where(and(eq(messages.id, messageId), eq(messages.conversationId, conversationId), eq(messages.tenantId, tenantId)));
  return row;
}

/** What deleting an item leaves of its row: the changed fields, or null when the row goes. */
type RowChange = Pick<MessageRow, "content" | "parts" | "toolCalls" | "reasoning"> | null;

/**
 * A row without the item: a user, system, developer or tool row is its one
 * item; an assistant row loses its reasoning, its text, or one tool call. A
 * row left with no text and no calls goes (its reasoning was about them, and
 * its message item would otherwise come back as an empty one).
 */
function rowWithout(row: MessageRow, part: ItemPart): RowChange {
  if (row.role !== "assistant") return null;
  const calls = row.toolCalls ?? [];
  const left: NonNullable<RowChange> = { content: row.content, parts: row.parts, toolCalls: row.toolCalls, reasoning: row.reasoning };
  if (part === "reasoning") left.reasoning = null;
  else if (part === "message") Object.assign(left, { content: "", parts: null });
  else {
    const rest = calls.filter((_, i) => i !== part.call);
    left.toolCalls = rest.length ? rest : null;
  }
  return left.content === "" && !left.toolCalls?.length ? null : left;
}

/** The tokens a row adds to the running totals: its count, if it is in history at all. */
const countedTokens = (row: Pick<MessageRow, "role" | "status" | "content" | "tokens">): number => (belongsInHistory(row) ? row.tokens : 0);

/**
 * Deletes one item, under the conversation's row lock (as appends take it):
 * the whole row, or the part of an assistant row the item is. The running
 * token totals (`history_tokens`, which history fitting reads) of the row and
 * every later one change by what the row no longer counts, in the same
 * transaction. Seqs are not renumbered: a deleted row leaves a gap. Nothing
 * of a reply in flight may go (400), and nothing while a reply is in flight
 * (409, as an append): its worker reads the history and stores after it.
 * Returns the conversation as it is afterwards.
 */
export async function deleteConversationItem<T extends { id: string }>(
  deps: { db: Database },
  tenantId: string,
  conversationId: string,
  ref: ItemRef,
  itemsOf: ItemsOf<T>,
): Promise<ConversationRow> {
  if (!looksLikeId("conv", conversationId)) throw new NotFoundError("conversation", conversationId);
  return deps.db.transaction(async (tx) => {
    const [locked] = await tx
      .select({ id: conversations.id })
      .from(conversations)
      .where(and(eq(conversations.id, conversationId), eq(conversations.tenantId, tenantId)))
      .for("update");
    if (!locked) throw new NotFoundError("conversation", conversationId);
    const [row] = looksLikeId("msg", ref.messageId)
      ? await tx.select().from(messages).where(and(eq(messages.id, ref.messageId), eq(messages.conversationId, conversationId)))
      : [];
    if (!row || !itemsOf(row).some((item) => item.id === ref.itemId)) throw new ConversationItemNotFoundError(ref.itemId);
    if (isInFlight(row.status)) {
      throw new InvalidRequestError(
        `The item '${ref.itemId}' is part of a reply in flight (${row.id}); cancel the reply or wait for it to end first.`,
        null,
        "reply_in_flight",
      );
    }
    const [busy] = await tx
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.conversationId, conversationId), replyInFlightSql))
      .limit(1);
    if (busy) throw new ConversationBusyError(busy.id);

    const change = rowWithout(row, ref.part);
    let delta: number;
    if (change === null) {
      await tx.delete(messages).where(eq(messages.id, row.id));
      delta = -countedTokens(row);
    } else {
      const tokens = givenMessageTokens({
        content: change.content,
        parts: change.parts as never,
        name: row.name ?? undefined,
        tool_calls: (change.toolCalls as ToolCall[] | null) ?? undefined,
        tool_call_id: row.toolCallId ?? undefined,
      });
      delta = countedTokens({ ...row, ...change, tokens }) - countedTokens(row);
      await tx
        .update(messages)
        .set({ ...change, toolCalls: change.toolCalls as StoredToolCall[] | null, tokens })
        .where(eq(messages.id, row.id));
    }
    if (delta !== 0) {
      // The row's own total (when it stays) and every later one's; earlier ones do not include it.
      await tx
        .update(messages)
        .set({ historyTokens: sql`${messages.historyTokens} + ${delta}` })
        .where(and(eq(messages.conversationId, conversationId), (change === null ? gt : gte)(messages.seq, row.seq)));
    }
    const [conversation] = await tx
      .update(conversations)
      .set({
        ...(change === null ? { messageCount: sql`${conversations.messageCount} - 1` } : {}),
        updatedAt: sql`now()`,
      })
      .where(eq(conversations.id, conversationId))
      .returning();
    if (!conversation) throw new NotFoundError("conversation", conversationId);
    return conversation;
  });
}
