import { z } from "@hono/zod-openapi";
import { and, asc, eq, lte } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { conversations, messages, type ConversationRow } from "../db/schema.ts";
import { InvalidRequestError, NotFoundError } from "./errors.ts";
import { looksLikeId, newConversationId, newMessageId } from "./ids.ts";
import { isInFlight } from "./replies.ts";
import { metadataSchema, storableText } from "./resources.ts";

export const forkConversationSchema = z
  .object({
    message_id: z.string().openapi({ description: "The last message the fork keeps; the history up to it is copied." }),
    title: storableText().max(512).nullable().optional().openapi({ description: "Defaults to the source's title." }),
    metadata: metadataSchema.optional().openapi({ description: "Defaults to the source's metadata." }),
  })
  .strict()
  .openapi("ForkConversation");
export type ForkConversationInput = z.infer<typeof forkConversationSchema>;

/** Rows per insert: well under Postgres' 65,535 bind parameters at a message's ~20 columns. */
const COPY_BATCH = 1_000;

/**
 * A new conversation with the source's settings and a copy of its history up
 * to and including one message (same seqs, contents, token counts and running
 * totals; new ids). The two go their own ways from there: a copy, not a
 * shared reference, so deleting either leaves the other whole.
 */
export async function forkConversation(
  deps: { db: Database },
  tenantId: string,
  conversationId: string,
  input: ForkConversationInput,
  /** `hidden`: the fork holds a Responses API chain, not listed with the tenant's conversations. */
  opts: { hidden?: boolean } = {},
): Promise<ConversationRow> {
  if (!looksLikeId("conv", conversationId)) throw new NotFoundError("conversation", conversationId);
  if (!looksLikeId("msg", input.message_id)) throw new NotFoundError("message", input.message_id, "message_id");
  return deps.db.transaction(async (tx) => {
    const [source] = await tx
      .select()
      .from(conversations)
      .where(and(eq(conversations.id, conversationId), eq(conversations.tenantId, tenantId)));
    if (!source) throw new NotFoundError("conversation", conversationId);
    const [at] = await tx
      .select({ seq: messages.seq, status: messages.status })
      .from(messages)
      .where(and(eq(messages.id, input.message_id), eq(messages.conversationId, source.id)));
    if (!at) throw new NotFoundError("message", input.message_id, "message_id");
    if (isInFlight(at.status)) {
      throw new InvalidRequestError("A reply in flight cannot be forked at: wait for it to end, or cancel it.", "message_id", "reply_in_flight");
    }
    const history = await tx
      .select()
      .from(messages)
      .where(and(eq(messages.conversationId, source.id), lte(messages.seq, at.seq)))
      .orderBy(asc(messages.seq));
    const now = new Date();
    const [fork] = await tx
      .insert(conversations)
      .values({
        id: newConversationId(),
        tenantId,
        title: input.title === undefined ? source.title : input.title,
        model: source.model,
        system: source.system,
        params: source.params,
        metadata: input.metadata ?? source.metadata,
        contextStrategy: source.contextStrategy,
        hidden: opts.hidden ?? false,
        messageCount: history.length,
        lastSeq: at.seq,
        createdAt: now,
        updatedAt: now,
      })
      .returning();
    if (!fork) throw new Error("insert returned no conversation");
    for (let i = 0; i < history.length; i += COPY_BATCH) {
      await tx.insert(messages).values(
        history.slice(i, i + COPY_BATCH).map((m) => ({ ...m, id: newMessageId(), conversationId: fork.id })),
      );
    }
    return fork;
  });
}
