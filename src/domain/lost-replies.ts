import { and, asc, inArray, lt } from "drizzle-orm";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { messages } from "../db/schema.ts";
import type { ModelJobQueue } from "../queue/completions.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { contentSoFar } from "./messages.ts";
import { finishReply, inFlightStatuses } from "./replies.ts";
import { toMessageResource } from "./resources.ts";

export interface LostReplyDeps {
  db: Database;
  jobQueue: ModelJobQueue;
  replyEvents: ReplyEventLog;
  replySlots: ReplySlots;
  log: Logger;
}

/**
 * Fails replies that are in flight in Postgres but have no job that can still
 * run them (Redis flushed or restarted without its data, the job removed, or
 * failed after too many lost workers), so no conversation stays busy forever.
 * Replies younger than `graceMs` are left alone: their job may not be queued yet.
 * Safe to run from every worker at once: a reply ends once.
 */
export async function failLostReplies(deps: LostReplyDeps, opts: { graceMs: number; batch?: number }): Promise<number> {
  const candidates = await deps.db
    .select({ id: messages.id, tenantId: messages.tenantId })
    .from(messages)
    .where(and(inArray(messages.status, inFlightStatuses), lt(messages.createdAt, new Date(Date.now() - opts.graceMs))))
    .orderBy(asc(messages.createdAt))
    .limit(opts.batch ?? 500);
  let failed = 0;
  for (const { id, tenantId } of candidates) {
    if (await deps.jobQueue.isPending(id)) continue;
    const row = await finishReply(deps.db, id, {
      status: "failed",
      content: await contentSoFar(deps.replyEvents, id).catch(() => ""),
      error: {
        message: "The reply's job was lost before it finished (the queue lost it, or its workers kept dying).",
        type: "server_error",
        code: "reply_lost",
      },
    });
    if (!row) continue;
    failed++;
    await deps.replySlots.release(tenantId, id);
    deps.log.warn({ replyId: id }, "failed a reply whose job was lost");
    await deps.replyEvents.append(id, [
      { event: "message.failed", data: toMessageResource(row) },
      { event: "done", data: "[DONE]" },
    ]);
  }
  return failed;
}
