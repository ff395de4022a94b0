import type { Logger } from "pino";
import type { ModelRegistry } from "../providers/registry.ts";
import type { ChatMessage } from "../providers/types.ts";
import type { CompletionJob, JobRun, ModelJobQueue } from "../queue/completions.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { DependencyUnavailableError, ModelNotFoundError } from "./errors.ts";
import { newCompletionId } from "./ids.ts";
import { callModel } from "./model-call.ts";

/**
 * The stateless chat-completions API: nothing is stored in Postgres, but the
 * call goes through the same queue, worker pool and event stream as a
 * conversation's reply, so it scales and streams the same way.
 */

export interface StatelessCompletionRequest {
  model: string;
  messages: ChatMessage[];
  params: Record<string, unknown>;
  upstreamStream: boolean;
  retainEventsSeconds?: number;
  /** The request that asked for it, named in the worker's log lines. */
  requestId?: string;
}

/** What a completion's end event carries: the fields a reply's message resource has too. */
export interface CompletionEnd {
  id: string;
  status: "completed" | "failed";
  content: string;
  finish_reason: string | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  error: { message: string; type: string; code: string } | null;
}

export async function startStatelessCompletion(
  deps: { models: ModelRegistry; jobQueue: ModelJobQueue; replyEvents: ReplyEventLog; replySlots: ReplySlots },
  tenantId: string,
  request: StatelessCompletionRequest,
): Promise<{ id: string }> {
  if (!deps.models.resolve(request.model)) throw new ModelNotFoundError(request.model, deps.models.describeServed());
  const id = newCompletionId();
  await deps.replySlots.acquire(tenantId, id);
  try {
    // Opens the event stream with its retention before any worker writes to it.
    await deps.replyEvents.append(
      id,
      [{ event: "message.created", data: { id, status: "queued", model: request.model } }],
      request.retainEventsSeconds,
    );
    await deps.jobQueue.enqueue({ kind: "completion", completionId: id, tenantId, ...request });
  } catch (cause) {
    await deps.replySlots.release(tenantId, id).catch(() => {});
    throw Object.assign(new DependencyUnavailableError("The job queue (Redis)"), { cause });
  }
  return { id };
}

/** The worker's side: provider → event stream. */
export async function runStatelessCompletion(
  deps: { models: ModelRegistry; replyEvents: ReplyEventLog; replySlots: ReplySlots; log: Logger },
  job: CompletionJob,
  run: JobRun,
): Promise<void> {
  const id = job.completionId;
  if (run.restarted) await deps.replyEvents.append(id, [{ event: "message.reset", data: { id, reason: "worker_lost" } }]);
  const resolved = deps.models.resolve(job.model);
  const outcome = resolved
    ? await callModel({
        provider: resolved.provider,
        request: { model: resolved.upstreamModel, messages: job.messages, params: job.params },
        upstreamStream: job.upstreamStream,
        signal: run.signal,
        onDelta: async (content) => {
          await deps.replyEvents.appendDelta(id, { id, delta: { content } });
        },
      })
    : ({
        status: "failed",
        content: "",
        error: { message: `The model '${job.model}' is no longer served.`, type: "invalid_request_error", code: "model_not_found" },
      } as const);
  if (outcome.status === "failed") deps.log.warn({ completionId: id, code: outcome.error.code }, "completion failed");
  const end: CompletionEnd =
    outcome.status === "completed"
      ? { id, status: "completed", content: outcome.content, finish_reason: outcome.finishReason, usage: outcome.usage, error: null }
      : { id, status: "failed", content: outcome.content, finish_reason: null, usage: null, error: outcome.error };
  await deps.replySlots.release(job.tenantId, id);
  await deps.replyEvents.append(id, [
    { event: outcome.status === "completed" ? "message.completed" : "message.failed", data: end },
    { event: "done", data: "[DONE]" },
  ], job.retainEventsSeconds);
}
