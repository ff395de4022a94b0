import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import type { ConversationRow, MessageRow } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import { ProviderError } from "../providers/types.ts";
import type { JobRun, ModelJobQueue, ReplyJob } from "../queue/completions.ts";
import type { CancellationListener } from "../queue/reply-cancellation.ts";
import { ReplyEventWriter, ReplyStreamClosedError } from "../streams/reply-event-writer.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { keepReplyAlive } from "../streams/reply-liveness.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { ContextWindows } from "../context/context-windows.ts";
import { ContextLengthExceededError } from "../context/turn-budget.ts";
import { errorChain } from "./errors.ts";
import { buildHistory, type BuiltHistory } from "./history.ts";
import { callModel, describeFailure, type ModelCallOutcome } from "./model-call.ts";
import { streamedColumns } from "./messages.ts";
import { finishReply, startReplyAttempt } from "./replies.ts";
import { toMessageResource } from "./resources.ts";
import { modelCallSpan } from "../observability/model-call-spans.ts";
import { dbSpan } from "../observability/spans.ts";

export interface ReplyGenerationDeps {
  cancellations: CancellationListener;
  jobQueue: ModelJobQueue;
  contextWindows: ContextWindows;
  replySlots: ReplySlots;
  db: Database;
  models: ModelRegistry;
  replyEvents: ReplyEventLog;
  replyWriteBounds: ReplyWriteBounds;
  /** How often a run renews its reply's liveness mark (see keepReplyAlive). */
  replyLivenessMs: number;
  log: Logger;
}

/** How long a reply's writes are retried while their store is away. */
export interface ReplyWriteBounds {
  /** Events, while Redis is unreachable (then the reply fails with `events_unavailable`). */
  eventsOutageMs: number;
  /** The final row, while Postgres is unreachable. */
  finalWriteRetryMs: number;
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
 *
 * Each run is an attempt (numbered on the row): its events and its final row
 * are taken only while no newer attempt has started, so a run that lost its
 * job (a stalled lock, a partition) stops instead of writing over the run
 * that took it over. The stored content is exactly what was streamed.
 */
export async function generateReply(deps: ReplyGenerationDeps, job: ReplyJob, run: JobRun): Promise<void> {
  const log = deps.log.child({ replyId: job.replyId });
  // The attempt and the conversation in one statement: the first of two round trips to Postgres before the upstream
  // call. It does not wait for its WAL flush; the run's count in Redis keeps attempts apart (see startReplyAttempt).
  const attempt = await dbSpan("start reply attempt", "UPDATE", "messages", () => startReplyAttempt(deps.db, job.tenantId, job.replyId, run.attempt));
  if (!attempt) return void log.info("reply is gone or already ended; nothing to generate");
  const { reply, conversation } = attempt;
  // While this run goes on, the lost-reply sweep leaves the reply alone, even once Redis has lost its job.
  const alive = keepReplyAlive(deps.replyEvents, reply.id, deps.replyLivenessMs);
  try {
    await runAttempt(deps, job, run, reply, conversation, log);
  } finally {
    alive.stop();
  }
}

/** One attempt at the reply, from claiming its events to storing and announcing its end. */
async function runAttempt(
  deps: ReplyGenerationDeps,
  job: ReplyJob,
  run: JobRun,
  reply: MessageRow,
  conversation: ConversationRow | null,
  log: Logger,
): Promise<void> {
  const attempt = reply.attempt;
  const events = new ReplyEventWriter({
    events: deps.replyEvents,
    replyId: reply.id,
    attempt,
    outageMs: deps.replyWriteBounds.eventsOutageMs,
    signal: run.signal,
  });
  // Claims the reply's events for this attempt: an earlier run's writes are refused from here on.
  const restarted = attempt > 1;
  if (restarted) log.warn({ attempt }, "reply restarts: the run that was generating it was lost");
  // The claim (Redis) and the history's read (Postgres) go out together: one round trip less before the first token.
  const [started, prepared] = await Promise.all([
    events
      .start(restarted ? [{ event: "message.reset", data: { id: reply.id, reason: "worker_lost" } }] : [])
      .then(() => null, (err: unknown) => err),
    conversation ? prepareModelCall(deps, conversation, reply) : null,
  ]);
  if (started instanceof ReplyStreamClosedError) return void log.info({ reason: started.reason }, "reply's events closed to this run; it stops");

  let outcome: ReplyCallOutcome;
  if (started) {
    outcome = { status: "failed", content: "", error: describeFailure(started), cause: started };
  } else {
    if (!conversation || !prepared) return void log.info("conversation was deleted; nothing to generate");
    outcome = "failed" in prepared ? prepared.failed : await callModelForReply(deps, job, run, conversation, reply, prepared, events);
  }
  if (run.signal.aborted) return void log.warn("the run lost its job; the run that takes it over finishes the reply");
  // Everything handed to the stream is in it (or the writer has given up) before the end is stored.
  const drained = await events.drain().then(() => null, (err: unknown) => err);
  if (drained instanceof ReplyStreamClosedError) return void log.info({ reason: drained.reason }, "reply's events closed to this run; it stops");
  if (drained && outcome.status !== "failed") outcome = { status: "failed", content: "", error: describeFailure(drained), cause: drained };
  if (outcome.status === "failed") {
    log[outcome.cause instanceof ProviderError ? "warn" : "error"]({ err: outcome.cause, code: outcome.error.code }, "reply failed");
  }

  // The stored reply is what followers were sent, no more, no less: its text, reasoning, tool calls and logprobs.
  const { cause: _cause, ...rest } = outcome;
  const stored = { ...rest, ...streamedColumns(events.publishedReply) };
  const finish = () => finishReply(deps.db, reply.id, stored, { attempt });
  const row = await dbSpan("finish reply", "UPDATE", "messages", () => retryWhileUnreachable(finish, deps.replyWriteBounds.finalWriteRetryMs, log));
  // Null: the reply ended another way meanwhile (cancelled, deleted, failed by the sweep) or a newer attempt has it;
  // whoever ended it wrote its end.
  if (!row) return void log.info("reply ended elsewhere before this run finished");
  // Given back before the end is announced, so a client that starts its next turn on seeing it finds the slot free.
  // A slot that cannot be given back now lapses with its lease; the end is written regardless.
  await deps.replySlots.release(job.tenantId, reply.id).catch((err: unknown) => log.warn({ err }, "could not give back the reply slot"));
  const ended = await events
    .end([
      { event: terminalEvent[row.status as keyof typeof terminalEvent], data: toMessageResource(row) },
      { event: "done", data: "[DONE]" },
    ])
    .catch((err: unknown) => {
      log.error({ err }, "could not write the reply's end event; followers end from the stored reply");
      return "unwritten";
    });
  log.debug({ status: row.status, chars: row.content.length, ended }, "reply stored");
}

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 2_000;

/**
 * Runs `write` until it succeeds, retrying with backoff for up to `boundMs`
 * while its error may pass (the database unreachable or restarting); an error
 * Postgres gives for the data itself is thrown at once.
 */
async function retryWhileUnreachable<T>(write: () => Promise<T>, boundMs: number, log: Logger): Promise<T> {
  const deadline = Date.now() + boundMs;
  let delay = FIRST_RETRY_MS;
  for (;;) {
    try {
      return await write();
    } catch (err) {
      if (!mayPass(err) || Date.now() + delay > deadline) throw err;
      log.warn({ err, retryInMs: delay }, "storing the reply's end failed; retrying");
      await sleep(delay);
      delay = Math.min(delay * 2, MAX_RETRY_MS);
    }
  }
}

/** SQLSTATE classes that say the statement itself is wrong (data, constraint, syntax or access): retrying repeats them. */
const PERMANENT_SQLSTATE = /^(22|23|42|28)/;

function mayPass(err: unknown): boolean {
  for (const e of errorChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) && PERMANENT_SQLSTATE.test(code)) return false;
  }
  return true;
}

type ReplyCallOutcome = ModelCallOutcome & { cause?: unknown; context?: { messages: number; tokens: number } };

/** What a reply's model call needs: its provider and the history that fits its window; or why it cannot be made. */
type PreparedCall = ModelCallPlan | { failed: ReplyCallOutcome };
interface ModelCallPlan {
  resolved: NonNullable<ReturnType<ModelRegistry["resolve"]>>;
  history: BuiltHistory;
}

async function prepareModelCall(deps: ReplyGenerationDeps, conversation: ConversationRow, reply: MessageRow): Promise<PreparedCall> {
  const model = reply.model ?? conversation.model;
  const resolved = deps.models.resolve(model);
  if (!resolved) {
    const cause = new ProviderError(`The model '${model}' is no longer served.`, { code: "model_not_found" });
    return { failed: { status: "failed", content: "", error: describeFailure(cause), cause } };
  }
  try {
    return { resolved, history: await dbSpan("read history", "SELECT", "messages", () => buildHistory(deps, conversation, reply, model)) };
  } catch (err) {
    if (!(err instanceof ContextLengthExceededError)) throw err;
    return { failed: { status: "failed", content: "", error: { message: err.message, type: "invalid_request_error", code: err.code }, cause: err } };
  }
}

/** The model call for a reply, with the history that fits its window. */
async function callModelForReply(
  deps: ReplyGenerationDeps,
  job: ReplyJob,
  run: JobRun,
  conversation: ConversationRow,
  reply: MessageRow,
  { resolved, history }: ModelCallPlan,
  events: ReplyEventWriter,
): Promise<ReplyCallOutcome> {
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
  const traced = { provider: resolved.provider.name, model: resolved.upstreamModel, conversationId: conversation.id };
  const outcome = await modelCallSpan(traced, () => callModel({
    provider: resolved.provider,
    request: {
      model: resolved.upstreamModel,
      messages: history.messages,
      params: { ...conversation.params, ...(reply.params ?? {}) },
    },
    upstreamStream: job.upstreamStream ?? true,
    // Stopped by a cancel, by the run losing its job, or by its events closing to it.
    signal: AbortSignal.any([run.signal, cancelled.signal, events.stopped]),
    onDelta: (delta) => events.delta(delta),
  })).finally(cancelled.done);
  return { ...outcome, context: history.context };
}
