import type { Logger } from "pino";
import type { StoredError } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import type { ChatMessage } from "../providers/types.ts";
import type { CompletionJob, JobRun, ModelJobQueue } from "../queue/completions.ts";
import type { CancellationListener } from "../queue/reply-cancellation.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import { ReplyEventWriter, ReplyStreamClosedError } from "../streams/reply-event-writer.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { DependencyUnavailableError, ModelNotFoundError } from "./errors.ts";
import { newCompletionId } from "./ids.ts";
import { callModel, describeFailure, type ModelCallOutcome } from "./model-call.ts";
import type { ReplyWriteBounds } from "./reply-generation.ts";

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
  status: "completed" | "failed" | "cancelled";
  content: string;
  finish_reason: string | null;
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null;
  error: StoredError | null;
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

/**
 * A call without an Idempotency-Key whose client went away before its end: nobody can be answered any
 * more, so it stops. The stream is ended first (a run that has not started finds it ended and stands
 * down; one that has is refused its next write), the slot given back, then the running worker is
 * signalled to abort its upstream call at once. Nothing is done when it had ended already.
 */
export async function abandonStatelessCompletion(
  deps: { replyEvents: ReplyEventLog; replySlots: ReplySlots; signalCancel(id: string): Promise<void> },
  tenantId: string,
  id: string,
): Promise<void> {
  const end: CompletionEnd = { id, status: "cancelled", content: "", finish_reason: null, usage: null, error: null };
  const written = await deps.replyEvents.end(id, [
    { event: "message.cancelled", data: end },
    { event: "done", data: "[DONE]" },
  ]);
  if (written.status !== "ok") return;
  await deps.replySlots.release(tenantId, id);
  await deps.signalCancel(id);
}

/** The worker's side: provider → event stream, fenced and riding out short Redis outages as a reply's run does. */
export async function runStatelessCompletion(
  deps: {
    models: ModelRegistry;
    replyEvents: ReplyEventLog;
    replySlots: ReplySlots;
    log: Logger;
    replyWriteBounds: ReplyWriteBounds;
    cancellations: Pick<CancellationListener, "watch">;
  },
  job: CompletionJob,
  run: JobRun,
): Promise<void> {
  const id = job.completionId;
  // Watched before the stream is claimed: an abandoning client ends the stream first and signals after
  // (abandonStatelessCompletion), so this run either finds the stream ended or hears the signal.
  const abandoned = deps.cancellations.watch(id);
  const events = new ReplyEventWriter({
    events: deps.replyEvents,
    replyId: id,
    attempt: run.attempt,
    outageMs: deps.replyWriteBounds.eventsOutageMs,
    signal: run.signal,
    ...(job.retainEventsSeconds === undefined ? {} : { ttlSeconds: job.retainEventsSeconds }),
  });
  const started = await events
    .start(run.restarted ? [{ event: "message.reset", data: { id, reason: "worker_lost" } }] : [])
    .then(() => null, (err: unknown) => err);
  if (started instanceof ReplyStreamClosedError) {
    abandoned.done();
    return;
  }
  const resolved = deps.models.resolve(job.model);
  let outcome: ModelCallOutcome & { cause?: unknown } = started
    ? { status: "failed", content: "", error: describeFailure(started) }
    : resolved
      ? await callModel({
          provider: resolved.provider,
          request: { model: resolved.upstreamModel, messages: job.messages, params: job.params },
          upstreamStream: job.upstreamStream,
          signal: AbortSignal.any([run.signal, abandoned.signal, events.stopped]),
          onDelta: (content) => events.delta(content),
        })
      : {
          status: "failed",
          content: "",
          error: { message: `The model '${job.model}' is no longer served.`, type: "invalid_request_error", code: "model_not_found" },
        };
  abandoned.done();
  // Abandoned: its end is written and its slot given back already.
  if (run.signal.aborted || abandoned.signal.aborted) return;
  const drained = await events.drain().then(() => null, (err: unknown) => err);
  if (drained instanceof ReplyStreamClosedError) return;
  if (drained && outcome.status !== "failed") outcome = { status: "failed", content: "", error: describeFailure(drained) };
  if (outcome.status === "failed") deps.log.warn({ completionId: id, code: outcome.error.code }, "completion failed");
  const content = events.published;
  const end: CompletionEnd =
    outcome.status === "completed"
      ? { id, status: "completed", content, finish_reason: outcome.finishReason, usage: outcome.usage, error: null }
      : { id, status: "failed", content, finish_reason: null, usage: null, error: outcome.error };
  await deps.replySlots.release(job.tenantId, id).catch((err: unknown) => deps.log.warn({ err }, "could not give back the reply slot"));
  await events.end([
    { event: outcome.status === "completed" ? "message.completed" : "message.failed", data: end },
    { event: "done", data: "[DONE]" },
  ]);
}
