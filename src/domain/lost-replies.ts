import { and, asc, inArray, lt } from "drizzle-orm";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { messages, type MessageRow } from "../db/schema.ts";
import type { ModelJobQueue } from "../queue/completions.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { contentSoFar } from "./messages.ts";
import { finishReply, inFlightStatuses } from "./replies.ts";
import { toMessageResource } from "./resources.ts";
import { storableText } from "./storable-text.ts";

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
    const row = await failLostReply(deps, id);
    if (!row) continue;
    failed++;
    const logFailure = (step: string) => (err: unknown) => deps.log.warn({ replyId: id, code: errorCode(err) }, `${step} failed`);
    // The row has ended: what follows must not hold up the rest of the batch (followers end from the row).
    await deps.replySlots.release(tenantId, id).catch(logFailure("giving back a lost reply's slot"));
    deps.log.warn({ replyId: id }, "failed a reply whose job was lost");
    await deps.replyEvents.end(id, [
      { event: "message.failed", data: toMessageResource(row) },
      { event: "done", data: "[DONE]" },
    ]).catch(logFailure("ending a lost reply's events"));
  }
  return failed;
}

const lostError = {
  message: "The reply's job was lost before it finished (the queue lost it, or its workers kept dying).",
  type: "server_error",
  code: "reply_lost",
};

/**
 * Stores a lost reply as failed, with the content its events hold made
 * storable. Should that write still fail, the reply ends with no content and
 * an error that says so: no row can fail the sweep on every cycle.
 */
async function failLostReply(deps: LostReplyDeps, id: string): Promise<MessageRow | null> {
  // Sealed first, as cancel does: a run still writing it somewhere (its job gone with Redis's data) adds no delta now.
  await deps.replyEvents.seal(id).catch(() => {});
  const content = storableText(await contentSoFar(deps.replyEvents, id).catch(() => ""));
  try {
    return await finishReply(deps.db, id, { status: "failed", content, error: lostError });
  } catch (err) {
    // Postgres unreachable says nothing about this row: the sweep stops, and runs again next cycle.
    if (isConnectionFailure(errorCode(err))) throw err;
    deps.log.warn({ replyId: id, code: errorCode(err) }, "storing a lost reply failed; ending it without its content");
  }
  return finishReply(deps.db, id, {
    status: "failed",
    content: "",
    error: { ...lostError, message: `${lostError.message} Its content could not be stored.` },
  });
}

/**
 * A driver's error code (Postgres SQLSTATE, Node's errno name; drizzle wraps the driver's error as its
 * cause), never its message or parameters.
 */
function errorCode(err: unknown): string {
  const { code, cause } = (err ?? {}) as { code?: unknown; cause?: { code?: unknown } };
  return String(code ?? cause?.code ?? (err instanceof Error ? err.name : typeof err));
}

/** SQLSTATE classes 08 (connection) and 57P (server shutting down), and the driver's own connection errors. */
const isConnectionFailure = (code: string): boolean =>
  code.startsWith("08") || code.startsWith("57P") || /^(E[A-Z]+|CONNECT(ION)?_[A-Z_]+)$/.test(code);
