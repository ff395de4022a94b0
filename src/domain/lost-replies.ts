import { and, asc, lt } from "drizzle-orm";
import type { Logger } from "pino";
import type { Database } from "../db/client.ts";
import { messages, type MessageRow } from "../db/schema.ts";
import type { ModelJobQueue } from "../queue/completions.ts";
import type { ReplySlots } from "../access/reply-slots.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { aliveMarkTtlMs } from "../streams/reply-liveness.ts";
import { streamedColumns } from "./messages.ts";
import { finishReply, replyInFlightSql } from "./replies.ts";
import { toMessageResource } from "./resources.ts";
import { streamedReplyOf } from "./reply-delta.ts";
import { storableText } from "./storable-text.ts";

export interface LostReplyDeps {
  db: Database;
  jobQueue: ModelJobQueue;
  replyEvents: ReplyEventLog;
  replySlots: ReplySlots;
  log: Logger;
}

/**
 * Ends replies that are in flight in Postgres but that nothing will finish:
 * no job that can still run them (Redis flushed or restarted without its data,
 * the job removed, or failed after too many lost workers) and no live run
 * (a run whose job Redis lost goes on, renewing its reply's liveness mark).
 * A reply must be found so on two sweeps at least a mark's lifetime apart:
 * right after Redis restarts empty, a live run's mark is back within a period.
 * Then a reply whose job vanished before any worker took it (still queued,
 * attempt 0) is queued again; any other is failed `reply_lost`.
 * Replies younger than `graceMs` are left alone: their job may not be queued yet.
 * Safe to run from every worker at once: a job id is its reply's id (queued
 * again once), and a reply ends once.
 */
export class LostReplySweep {
  readonly #deps: LostReplyDeps;
  readonly #graceMs: number;
  readonly #confirmMs: number;
  readonly #batch: number;
  /** Replies last seen with no job and no live run, and since when (ms). */
  #suspects = new Map<string, number>();

  /** `livenessMs`: how often runs renew their replies' liveness marks (REPLY_LIVENESS_MS). */
  constructor(deps: LostReplyDeps, opts: { graceMs: number; livenessMs: number; batch?: number }) {
    this.#deps = deps;
    this.#graceMs = opts.graceMs;
    this.#confirmMs = aliveMarkTtlMs(opts.livenessMs);
    this.#batch = opts.batch ?? 500;
  }

  /** One sweep: how many lost replies it failed and how many it queued again. */
  async run(): Promise<{ failed: number; requeued: number }> {
    const deps = this.#deps;
    const candidates = await deps.db
      .select({ id: messages.id, tenantId: messages.tenantId, status: messages.status, attempt: messages.attempt })
      .from(messages)
      .where(and(replyInFlightSql, lt(messages.createdAt, new Date(Date.now() - this.#graceMs))))
      .orderBy(asc(messages.createdAt))
      .limit(this.#batch);
    const now = Date.now();
    // Only replies seen lost on this sweep stay suspects (should it stop early, the rest start over: later, never sooner).
    const suspects = new Map<string, number>();
    const counts = { failed: 0, requeued: 0 };
    try {
      for (const reply of candidates) {
        const job = await deps.jobQueue.jobState(reply.id);
        if (job === "pending" || (await deps.replyEvents.isAlive(reply.id))) continue;
        const since = this.#suspects.get(reply.id) ?? now;
        if (now - since < this.#confirmMs) {
          suspects.set(reply.id, since);
          continue;
        }
        if (job === "gone" && reply.status === "queued" && reply.attempt === 0) {
          // No worker ever took it, so nothing of it was generated: it can simply run.
          await deps.jobQueue.enqueue({ kind: "reply", replyId: reply.id, tenantId: reply.tenantId });
          deps.log.warn({ replyId: reply.id }, "queued again a reply whose job was lost before it started");
          counts.requeued++;
          continue;
        }
        if (await failLostReply(deps, reply)) counts.failed++;
      }
    } finally {
      this.#suspects = suspects;
    }
    return counts;
  }
}

/** Fails a lost reply, gives back its slot and ends its events. False when it had ended meanwhile. */
async function failLostReply(deps: LostReplyDeps, { id, tenantId }: { id: string; tenantId: string }): Promise<boolean> {
  // Sealed first, as cancel does: a run still writing it somewhere (its job gone with Redis's data) adds no delta now.
  await deps.replyEvents.seal(id).catch(() => {});
  const streamed = await lostReplyEvents(deps.replyEvents, id);
  // A reply stored with no text produced nothing for its turn (its reasoning and tool calls are not kept here).
  const row = await storeLostReply(deps, id, storableText(streamed.content), streamed.content ? streamed.firstTokenAt : null);
  if (!row) return false;
  const logFailure = (step: string) => (err: unknown) => deps.log.warn({ replyId: id, code: errorCode(err) }, `${step} failed`);
  // The row has ended: what follows must not hold up the rest of the batch (followers end from the row).
  await deps.replySlots.release(tenantId, id).catch(logFailure("giving back a lost reply's slot"));
  deps.log.warn({ replyId: id }, "failed a reply whose job was lost");
  // Followers end with what is stored: they start over when the events lost their start with Redis's data (what
  // they had may be more than the events hold now), or when other text was stored than they were sent.
  const startOver = !streamed.whole || streamed.content !== row.content;
  await deps.replyEvents.end(id, [
    ...(startOver
      ? [
          { event: "message.reset" as const, data: { id, reason: "events_lost" } },
          ...(row.content ? [{ event: "message.delta" as const, data: { id, delta: { content: row.content } } }] : []),
        ]
      : []),
    { event: "message.failed", data: toMessageResource(row) },
    { event: "done", data: "[DONE]" },
  ]).catch(logFailure("ending a lost reply's events"));
  return true;
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
async function storeLostReply(deps: LostReplyDeps, id: string, content: string, firstTokenAt: Date | null): Promise<MessageRow | null> {
  try {
    return await finishReply(deps.db, id, { status: "failed", content, error: lostError, firstTokenAt });
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
 * A lost reply's content as its events hold it (the deltas since it last
 * started), and whether they still hold its start: a stream that does not
 * begin with the reply's creation or a start-over lost its beginning with
 * Redis's data (or could not be read), and followers may have had more.
 */
async function lostReplyEvents(
  replyEvents: ReplyEventLog,
  id: string,
): Promise<{ content: string; firstTokenAt: Date | null; whole: boolean }> {
  const events = await replyEvents.readAfter(id, null).catch(() => null);
  if (!events) return { content: "", firstTokenAt: null, whole: false };
  const { content, firstTokenAt } = streamedColumns(streamedReplyOf(events));
  const first = events[0]?.event;
  return { content, firstTokenAt, whole: first === "message.created" || first === "message.reset" };
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
