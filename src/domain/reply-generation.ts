import { eq } from "drizzle-orm";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { conversations, type StoredError } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import { ProviderError, type FinishReason, type TokenUsage } from "../providers/types.ts";
import type { ReplyJob } from "../queue/completions.ts";
import type { NewReplyEvent, ReplyEventLog } from "../streams/reply-events.ts";
import { buildHistory } from "./history.ts";
import { finishReply, loadReply, markReplyInProgress, type ReplyOutcome } from "./replies.ts";
import { toMessageResource } from "./resources.ts";

export interface ReplyGenerationDeps {
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

/** What went wrong, in the words stored on the reply: no stack, no upstream secrets. */
function describeFailure(err: unknown): StoredError {
  if (err instanceof ProviderError) return { message: err.message, type: "upstream_error", code: err.code };
  if (err instanceof Error && err.name === "AbortError") {
    return { message: "The reply was interrupted before it finished.", type: "server_error", code: "interrupted" };
  }
  return { message: "The reply failed inside Parley.", type: "server_error", code: "internal_error" };
}

/**
 * The worker's side of a turn: history → provider → event stream → Postgres.
 * Every delta goes to the reply's Redis Stream as it arrives; the content,
 * finish reason and usage are written to Postgres once, at the end, with the
 * partial content kept when the model fails.
 */
export async function generateReply(deps: ReplyGenerationDeps, job: ReplyJob, signal: AbortSignal): Promise<void> {
  const log = deps.log.child({ replyId: job.replyId });
  const queued = await loadReply(deps.db, job.tenantId, job.replyId);
  if (!queued) return void log.info("reply is gone; nothing to generate");
  const reply = await markReplyInProgress(deps.db, job.replyId);
  if (!reply) return void log.info({ status: queued.status }, "reply already ended; nothing to generate");

  let content = "";
  let outcome: ReplyOutcome;
  try {
    const [conversation] = await deps.db.select().from(conversations).where(eq(conversations.id, reply.conversationId));
    if (!conversation) return void log.info("conversation was deleted; nothing to generate");
    const model = reply.model ?? conversation.model;
    const resolved = deps.models.resolve(model);
    if (!resolved) {
      throw new ProviderError(`The model '${model}' is no longer served.`, { code: "model_not_found" });
    }
    const history = await buildHistory(deps.db, conversation, reply);
    const params = { ...conversation.params, ...(reply.params ?? {}) };
    let finish: { finishReason: FinishReason; usage: TokenUsage | null } | null = null;
    for await (const chunk of resolved.provider.streamChat(
      { model: resolved.upstreamModel, messages: history, params },
      signal,
    )) {
      if (chunk.type === "delta") {
        if (!chunk.content) continue;
        content += chunk.content;
        await deps.replyEvents.appendDelta(reply.id, { id: reply.id, delta: { content: chunk.content } });
      } else {
        finish = chunk;
      }
    }
    outcome = {
      status: "completed",
      content,
      finishReason: finish?.finishReason ?? "stop",
      usage: finish?.usage ?? null,
    };
  } catch (err) {
    const error = describeFailure(err);
    log[err instanceof ProviderError ? "warn" : "error"]({ err, code: error.code }, "reply failed");
    outcome = { status: "failed", content, error };
  }

  const stored = await finishReply(deps.db, reply.id, outcome);
  // Null: the reply ended another way meanwhile (cancelled, deleted); its end event was written then.
  if (!stored) return void log.info("reply ended elsewhere before this worker finished");
  const events: NewReplyEvent[] = [
    { event: terminalEvent[stored.status as keyof typeof terminalEvent], data: toMessageResource(stored) },
    { event: "done", data: "[DONE]" },
  ];
  await deps.replyEvents.append(reply.id, events);
  log.debug({ status: stored.status, chars: content.length }, "reply stored");
}
