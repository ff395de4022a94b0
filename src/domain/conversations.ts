import { z } from "@hono/zod-openapi";
import { and, asc, desc, eq, gt, lt, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { contextStrategies, conversations, messages, type ConversationRow, type MessageRow } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import { ModelNotFoundError, NotFoundError } from "./errors.ts";
import { looksLikeId, newConversationId } from "./ids.ts";
import { completedMessageRows } from "./message-rows.ts";
import { planPageScan, toPage, type Page, type PageQuery } from "./pagination.ts";
import { metadataSchema, paramsSchema, storableText } from "./resources.ts";

export interface ConversationDeps {
  db: Database;
  models: ModelRegistry;
  defaultModel: string;
}

const importedMessageSchema = z.object({
  role: z.enum(["system", "user", "assistant"]),
  content: storableText(),
  metadata: metadataSchema.optional(),
});

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

export async function createConversation(
  deps: ConversationDeps,
  tenantId: string,
  input: CreateConversationInput,
): Promise<{ conversation: ConversationRow; messages: MessageRow[] }> {
  const model = input.model ?? deps.defaultModel;
  assertServed(deps.models, model);
  const imported = input.messages ?? [];
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

export async function listConversations(
  deps: Pick<ConversationDeps, "db">,
  tenantId: string,
  query: PageQuery,
): Promise<Page<ConversationRow>> {
  const scan = planPageScan(query, query.order ?? "desc");
  const cursor = query.before ?? query.after;
  const cmp = scan.comparator === "gt" ? gt : lt;
  const rows = await deps.db
    .select()
    .from(conversations)
    .where(and(eq(conversations.tenantId, tenantId), cursor ? cmp(conversations.id, cursor) : undefined))
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

/** Deletes the conversation and, by cascade, its messages. */
export async function deleteConversation(
  deps: Pick<ConversationDeps, "db">,
  tenantId: string,
  id: string,
): Promise<void> {
  if (!looksLikeId("conv", id)) throw new NotFoundError("conversation", id);
  const deleted = await deps.db
    .delete(conversations)
    .where(and(eq(conversations.id, id), eq(conversations.tenantId, tenantId)))
    .returning({ id: conversations.id });
  if (deleted.length === 0) throw new NotFoundError("conversation", id);
}
