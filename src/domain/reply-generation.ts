import { eq } from "drizzle-orm";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { conversations, type ConversationRow, type MessageRow } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import { ProviderError } from "../providers/types.ts";
import type { JobRun, ModelJobQueue, ReplyJob } from "../queue/completions.ts";
import type { CancellationListener } from "../queue/reply-cancellation.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { ContextWindows } from "../context/context-windows.ts";
import { ContextLengthExceededError } from "../context/turn-budget.ts";
import { buildHistory, type BuiltHistory } from "./history.ts";
import { callModel, describeFailure, type ModelCallOutcome } from "./model-call.ts";
import { finishReply, markReplyInProgress } from "./replies.ts";
import { toMessageResource } from "./resources.ts";

export interface ReplyGenerationDeps {
  cancellations: CancellationListener;
  jobQueue: ModelJobQueue;
  contextWindows: ContextWindows;
  replySlots: ReplySlots;
  db: Database;
  models: ModelRegistry;
  replyEvents: ReplyEventLog;
  log: Logger;
}

const terminalEvent = {
  completed: "message.completed",
  failed: "message.failed",
  cancelled: "message.cancelled",
} as const;

/**
 * The worker's side of a conversation turn: history → provider → event
 * stream → Postgres. Every delta goes to the reply's Redis Stream as it
 * arrives; the content, finish reason and usage are written to Postgres once,
 * at the end, with the partial content kept when the model fails.
 */
export async function generateReply(deps: ReplyGenerationDeps, job: ReplyJob, run: JobRun): Promise<void> {
  const log = deps.log.child({ replyId: job.replyId });
  const reply = await markReplyInProgress(deps.db, job.tenantId, job.replyId);
  if (!reply) return void log.info("reply is gone or already ended; nothing to generate");
  if (run.restarted) {
    log.warn("reply restarts: the worker that was generating it was lost");
    await deps.replyEvents.append(reply.id, [{ event: "message.reset", data: { id: reply.id, reason: "worker_lost" } }]);
  }

  const [conversation] = await deps.db.select().from(conversations).where(eq(conversations.id, reply.conversationId));
  if (!conversation) return void log.info("conversation was deleted; nothing to generate");
  const outcome = await callModelForReply(deps, job, run, conversation, reply);
  if (outcome.status === "failed") {
    log[outcome.cause instanceof ProviderError ? "warn" : "error"]({ err: outcome.cause, code: outcome.error.code }, "reply failed");
  }

  const { cause: _cause, ...stored } = outcome;
  const row = await finishReply(deps.db, reply.id, stored);
  // Given back before the end is announced, so a client that starts its next turn on seeing it finds the slot free.
  await deps.replySlots.release(job.tenantId, reply.id);
  // Null: the reply ended another way meanwhile (cancelled, deleted); its end event was written then.
  if (!row) return void log.info("reply ended elsewhere before this worker finished");
  await deps.replyEvents.append(reply.id, [
    { event: terminalEvent[row.status as keyof typeof terminalEvent], data: toMessageResource(row) },
    { event: "done", data: "[DONE]" },
  ]);
  log.debug({ status: row.status, chars: row.content.length }, "reply stored");
}

type ReplyCallOutcome = ModelCallOutcome & { cause?: unknown; context?: { messages: number; tokens: number } };

/** The model call for a reply: its model, the history that fits its window, the call itself. */
async function callModelForReply(
  deps: ReplyGenerationDeps,
  job: ReplyJob,
  run: JobRun,
  conversation: ConversationRow,
  reply: MessageRow,
): Promise<ReplyCallOutcome> {
  const model = reply.model ?? conversation.model;
  const resolved = deps.models.resolve(model);
  if (!resolved) {
    const cause = new ProviderError(`The model '${model}' is no longer served.`, { code: "model_not_found" });
    return { status: "failed", content: "", error: describeFailure(cause), cause };
  }
  let history: BuiltHistory;
  try {
    history = await buildHistory(deps, conversation, reply, model);
  } catch (err) {
    if (!(err instanceof ContextLengthExceededError)) throw err;
    return { status: "failed", content: "", error: { message: err.message, type: "invalid_request_error", code: err.code }, cause: err };
  }
  if (history.unsummarizedThroughSeq !== null) {
    // The summary catches up in the background; this turn goes out with the summary as it is.
    await deps.jobQueue
      .enqueue({
        kind: "summary",
        conversationId: conversation.id,
        tenantId: job.tenantId,
        fromSeq: conversation.summaryThroughSeq,
        throughSeq: history.unsummarizedThroughSeq,
        requestId: job.requestId,
      })
      .catch((err: unknown) => deps.log.warn({ err }, "could not ask for a summary"));
  }
  const cancelled = deps.cancellations.watch(reply.id);
  const outcome = await callModel({
    provider: resolved.provider,
    request: {
      model: resolved.upstreamModel,
      messages: history.messages,
      params: { ...conversation.params, ...(reply.params ?? {}) },
    },
    upstreamStream: job.upstreamStream ?? true,
    signal: AbortSignal.any([run.signal, cancelled.signal]),
    onDelta: async (content) => {
      await deps.replyEvents.appendDelta(reply.id, { id: reply.id, delta: { content } });
    },
  }).finally(cancelled.done);
  return { ...outcome, context: history.context };
}
