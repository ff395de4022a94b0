import { z } from "@hono/zod-openapi";
import { and, asc, desc, eq, gt, ilike, lt, or, sql, type SQL } from "drizzle-orm";
import type { Logger } from "pino";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { Database } from "../db/client.ts";
import { contextStrategies, conversations, messages, type ConversationRow, type MessageRow } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { checkChatMessage, chatMessageShape } from "./chat-message.ts";
import { InvalidRequestError, ModelNotFoundError, NotFoundError } from "./errors.ts";
import { looksLikeId, newConversationId } from "./ids.ts";
import { completedMessageRows, givenMessage, toolResultsWithoutCall, type GivenMessage } from "./message-rows.ts";
import { contentSoFar } from "./messages.ts";
import { pageQuerySchema, planPageScan, toPage, type Page } from "./pagination.ts";
import { replyInFlightSql } from "./replies.ts";
import { metadataSchema, paramsSchema, storableText, toMessageResource } from "./resources.ts";

export interface ConversationDeps {
  db: Database;
  models: ModelRegistry;
  defaultModel: string;
}

const importedMessageSchema = z
  .object({ ...chatMessageShape, metadata: metadataSchema.optional() })
  .superRefine(checkChatMessage)
  .openapi("ImportedMessage");

const contextStrategySchema = z.enum(contextStrategies).openapi({
  description: "`auto` (default): send the newest messages that fit the model's window. `strict`: refuse a turn whose history does not fit.",
});

export const createConversationSchema = z
  .object({
    model: storableText().min(1).optional().openapi({ description: "Defaults to the deployment's default model." }),
    system: storableText().nullable().optional().openapi({ example: "You are a helpful travel guide." }),
    title: storableText().max(512).nullable().optional(),
    params: paramsSchema.optional(),
    metadata: metadataSchema.optional(),
    context_strategy: contextStrategySchema.optional(),
    messages: z
      .array(importedMessageSchema)
      .optional()
      .openapi({ description: "An existing history to import, oldest first; stored as completed messages." }),
  })
  .strict()
  .openapi("CreateConversation");
export type CreateConversationInput = z.infer<typeof createConversationSchema>;

export const updateConversationSchema = z
  .object({
    title: storableText().max(512).nullable().optional(),
    system: storableText().nullable().optional(),
    model: storableText().min(1).optional(),
    params: paramsSchema.optional(),
    metadata: metadataSchema.optional(),
    context_strategy: contextStrategySchema.optional(),
  })
  .strict()
  .openapi("UpdateConversation");
export type UpdateConversationInput = z.infer<typeof updateConversationSchema>;

function assertServed(models: ModelRegistry, model: string): void {
  if (!models.resolve(model)) throw new ModelNotFoundError(model, models.describeServed());
}

/**
 * `imported`: the history to store, when the caller translated it from another dialect (the
 * Conversations API's items); else `input.messages`. Errors about it name `messages.N`.
 */
export async function createConversation(
  deps: ConversationDeps,
  tenantId: string,
  input: CreateConversationInput,
  imported: GivenMessage[] = (input.messages ?? []).map((m) => givenMessage(m, m.metadata)),
): Promise<{ conversation: ConversationRow; messages: MessageRow[] }> {
  const model = input.model ?? deps.defaultModel;
  assertServed(deps.models, model);
  // A new conversation has no stored calls: each tool result answers a call imported before it.
  const [unanswered] = toolResultsWithoutCall(imported);
  if (unanswered) {
    throw new InvalidRequestError(
      `tool_call_id '${unanswered.id}' answers no tool call made earlier in the imported messages.`,
      `messages.${unanswered.index}.tool_call_id`,
    );
  }
  const now = new Date();
  return deps.db.transaction(async (tx) => {
    const [conversation] = await tx
      .insert(conversations)
      .values({
        id: newConversationId(),
        tenantId,
        title: input.title ?? null,
        model,
        system: input.system ?? null,
        params: input.params ?? {},
        metadata: input.metadata ?? {},
        contextStrategy: input.context_strategy ?? "auto",
        messageCount: imported.length,
        lastSeq: imported.length,
        createdAt: now,
        updatedAt: now,
      })
      .returning();
    if (!conversation) throw new Error("insert returned no conversation");
    if (imported.length === 0) return { conversation, messages: [] };
    const rows = await tx
      .insert(messages)
      .values(
        completedMessageRows(imported, { tenantId, conversationId: conversation.id, firstSeq: 1, now, historyTokensBefore: 0 }),
      )
      .returning();
    return { conversation, messages: rows };
  });
}

export async function getConversation(
  deps: Pick<ConversationDeps, "db">,
  tenantId: string,
  id: string,
): Promise<ConversationRow> {
  if (!looksLikeId("conv", id)) throw new NotFoundError("conversation", id);
  const [row] = await deps.db
    .select()
    .from(conversations)
    .where(and(eq(conversations.id, id), eq(conversations.tenantId, tenantId)));
  if (!row) throw new NotFoundError("conversation", id);
  return row;
}

/** The paging of every list, and `q`: a search of titles and metadata. */
export const conversationListQuerySchema = pageQuerySchema.extend({
  q: storableText()
    .trim()
    .max(200)
    .optional()
    .openapi({
      description:
        "Only the conversations whose title, or a metadata key or value, contains this text (case-insensitive; " +
        "`%` and `_` match themselves). Up to 200 characters, trimmed; empty lists all.",
      example: "lisbon",
    }),
});
export type ConversationListQuery = z.infer<typeof conversationListQuerySchema>;

/** A conversation whose title or a metadata key or value contains `text`, case-insensitively and literally. */
function mentions(text: string): SQL {
  // ILIKE's escape character is the backslash: escaped, the caller's wildcards match themselves.
  const pattern = `%${text.replace(/[\\%_]/g, "\\$&")}%`;
  return or(
    ilike(conversations.title, pattern),
    sql`exists (select 1 from jsonb_each_text(${conversations.metadata}) as e where e.key ilike ${pattern} or e.value ilike ${pattern})`,
  )!;
}

export async function listConversations(
  deps: Pick<ConversationDeps, "db">,
  tenantId: string,
  query: ConversationListQuery,
): Promise<Page<ConversationRow>> {
  const scan = planPageScan(query, query.order ?? "desc");
  const cursor = query.before ?? query.after;
  const cmp = scan.comparator === "gt" ? gt : lt;
  const rows = await deps.db
    .select()
    .from(conversations)
    .where(
      and(
        eq(conversations.tenantId, tenantId),
        eq(conversations.hidden, false),
        cursor ? cmp(conversations.id, cursor) : undefined,
        query.q ? mentions(query.q) : undefined,
      ),
    )
    .orderBy(scan.direction === "asc" ? asc(conversations.id) : desc(conversations.id))
    .limit(scan.take);
  return toPage(rows, scan);
}

export async function updateConversation(
  deps: ConversationDeps,
  tenantId: string,
  id: string,
  input: UpdateConversationInput,
): Promise<ConversationRow> {
  if (input.model !== undefined) assertServed(deps.models, input.model);
  if (!looksLikeId("conv", id)) throw new NotFoundError("conversation", id);
  const changes: Partial<ConversationRow> = {};
  if (input.title !== undefined) changes.title = input.title;
  if (input.system !== undefined) changes.system = input.system;
  if (input.model !== undefined) changes.model = input.model;
  if (input.params !== undefined) changes.params = input.params;
  if (input.metadata !== undefined) changes.metadata = input.metadata;
  if (input.context_strategy !== undefined) changes.contextStrategy = input.context_strategy;
  const [row] = await deps.db
    .update(conversations)
    .set({ ...changes, updatedAt: sql`now()` })
    .where(and(eq(conversations.id, id), eq(conversations.tenantId, tenantId)))
    .returning();
  if (!row) throw new NotFoundError("conversation", id);
  return row;
}

export interface ConversationDeletionDeps {
  db: Database;
  replyEvents: ReplyEventLog;
  replySlots: ReplySlots;
  /** Tells whichever worker generates a reply to stop (and abort its upstream call). */
  signalCancel(replyId: string): Promise<void>;
  log: Logger;
}

/**
 * Deletes the conversation and, by cascade, its messages. A reply in flight
 * is stopped as cancel stops it: its worker aborts the upstream call, its slot
 * is given back, and its followers get `message.cancelled` (the reply as it
 * was, content so far) and `done`. A worker finishing it at this moment finds
 * it gone and stores nothing.
 */
export async function deleteConversation(deps: ConversationDeletionDeps, tenantId: string, id: string): Promise<void> {
  if (!looksLikeId("conv", id)) throw new NotFoundError("conversation", id);
  const stopped = await deps.db.transaction(async (tx) => {
    // The conversation first, as an append locks it; then its replies in flight, so a worker storing one waits.
    const [found] = await tx
      .select({ id: conversations.id })
      .from(conversations)
      .where(and(eq(conversations.id, id), eq(conversations.tenantId, tenantId)))
      .for("update");
    if (!found) throw new NotFoundError("conversation", id);
    const inFlight = await tx
      .select()
      .from(messages)
      .where(and(eq(messages.conversationId, id), replyInFlightSql))
      .for("update");
    await tx.delete(conversations).where(eq(conversations.id, id));
    return inFlight;
  });
  for (const reply of stopped) await stopDeletedReply(deps, tenantId, reply);
}

/**
 * The rest of stopping a deleted reply, in Redis. The conversation is gone
 * whatever Redis says, so each step is tried on its own and a failure only
 * logged: a follower whose reply's events stop finds the row gone and ends
 * the same way, and an unreturned slot lapses (REPLY_SLOT_LEASE_SECONDS).
 */
async function stopDeletedReply(deps: ConversationDeletionDeps, tenantId: string, reply: MessageRow): Promise<void> {
  const failed = (step: string) => (err: unknown) =>
    deps.log.warn({ replyId: reply.id, code: (err as { code?: unknown }).code ?? (err as Error).name }, `deleting a reply in flight: ${step} failed`);
  await deps.replySlots.release(tenantId, reply.id).catch(failed("giving back its slot"));
  await deps.signalCancel(reply.id).catch(failed("signalling its worker"));
  // Sealed first: the worker's deltas are refused from here on, so the content read next is all the stream carries.
  await deps.replyEvents.seal(reply.id).catch(failed("sealing its events"));
  const content = await contentSoFar(deps.replyEvents, reply.id).catch(() => reply.content);
  const cancelled: MessageRow = { ...reply, status: "cancelled", content, completedAt: new Date() };
  await deps.replyEvents
    .end(reply.id, [
      { event: "message.cancelled", data: toMessageResource(cancelled) },
      { event: "done", data: "[DONE]" },
    ])
    .catch(failed("ending its events"));
}
