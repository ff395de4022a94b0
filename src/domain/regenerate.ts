import { z } from "@hono/zod-openapi";
import type { MessageRow } from "../db/schema.ts";
import { paramsSchema, storableText } from "./resources.ts";
import { appendTurn, type TurnDeps } from "./turns.ts";

export const regenerateReplySchema = z
  .object({
    model: storableText().min(1).optional().openapi({ description: "The model for the new reply; the conversation's when absent." }),
    params: paramsSchema.optional().openapi({ description: "Sampling fields for the new reply, over the conversation's `params`." }),
    stream: z.boolean().default(false).openapi({ description: "Answer with the new reply's events as SSE." }),
    wait: z.boolean().default(true).openapi({ description: "Non-streaming only: wait for the new reply (201), or answer at once (202)." }),
  })
  .strict()
  .openapi("RegenerateReply");
export type RegenerateReplyInput = z.infer<typeof regenerateReplySchema>;

/**
 * A new reply in place of the conversation's last one (which must have ended):
 * it takes the old reply's seq and the old reply is deleted, so the history
 * reads as if the model had answered this way the first time.
 */
export async function regenerateReply(
  deps: TurnDeps,
  tenantId: string,
  conversationId: string,
  replyId: string,
  input: RegenerateReplyInput,
  requestId?: string,
): Promise<MessageRow> {
  const { reply } = await appendTurn(deps, tenantId, conversationId, {
    messages: [],
    reply: true,
    replaces: replyId,
    ...(input.model === undefined ? {} : { model: input.model }),
    params: input.params ?? null,
    requestId,
  });
  if (!reply) throw new Error("a regenerated turn stored no reply");
  return reply;
}
