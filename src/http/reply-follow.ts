import { Readable } from "node:stream";
import type { Database } from "../db/client.ts";
import type { MessageRow } from "../db/schema.ts";
import type { ModelJobQueue } from "../queue/completions.ts";
import { findMessage } from "../domain/messages.ts";
import { replyEventSource, type ReplyControlDeps } from "../domain/reply-control.ts";
import { isInFlight } from "../domain/replies.ts";
import { toMessageResource } from "../domain/resources.ts";
import type { RecordedEnd, RecordedEndCheck, ReplyEventFollower } from "../streams/reply-event-follower.ts";
import type { ReplyEvent } from "../streams/reply-events.ts";

export type FollowReply = (signal: AbortSignal) => AsyncIterable<ReplyEvent>;

const endEvent = { completed: "message.completed", failed: "message.failed", cancelled: "message.cancelled" } as const;

/**
 * A conversation reply's end as Postgres has it, for a follower whose events
 * stopped: null while the reply is in flight. A reply whose row is gone was
 * deleted with its conversation, which stops a reply as cancel does: it ends
 * `cancelled`, as it was when the follower started (its conversation's delete
 * writes the same end to the stream, with the content so far, when Redis is up).
 */
export function recordedReplyEnd(db: Database, reply: MessageRow): RecordedEndCheck {
  return async (): Promise<RecordedEnd | null> => {
    const row = await findMessage(db, reply.id);
    if (row && isInFlight(row.status)) return null;
    const ended: MessageRow = row ?? { ...reply, status: "cancelled", completedAt: new Date() };
    return {
      event: endEvent[ended.status as keyof typeof endEvent],
      data: JSON.stringify(toMessageResource(ended)),
      endedAt: (ended.completedAt ?? ended.createdAt).getTime(),
      // Followers end with the stored content (a deleted reply's is not known: they keep what they had).
      ...(row ? { reply: { id: row.id, content: row.content } } : {}),
    };
  };
}

/**
 * A stateless completion has no row: its job is its record. A stalled
 * completion whose job is gone (finished without its end reaching the stream,
 * or lost with a Redis that restarted empty) will never end by itself, so it
 * ends failed with `completion_lost`. While Redis cannot say, it waits.
 */
export function lostCompletionEnd(jobQueue: ModelJobQueue, completionId: string): RecordedEndCheck {
  return async (): Promise<RecordedEnd | null> => {
    if (await jobQueue.isPending(completionId)) return null;
    const error = {
      message: "The completion's job was lost before its end was written; send the request again.",
      type: "server_error",
      code: "completion_lost",
    };
    const data = { id: completionId, status: "failed", content: "", finish_reason: null, usage: null, error };
    return { event: "message.failed", data: JSON.stringify(data), endedAt: Date.now() };
  };
}

/**
 * A reply's events for a response: live from its stream while Redis has it
 * (ending from the stored row should they stop), else replayed from the stored message.
 */
export async function openReplyEvents(
  deps: ReplyControlDeps & { follower: ReplyEventFollower },
  where: { tenantId: string; conversationId: string; replyId: string; lastEventId: string | null },
): Promise<FollowReply> {
  const source = await replyEventSource(deps, where.tenantId, where.conversationId, where.replyId, where.lastEventId);
  if (source.kind === "stored") return () => Readable.from(source.events);
  const recordedEnd = recordedReplyEnd(deps.db, source.reply);
  return (signal) => deps.follower.follow(source.key, source.afterId, { signal, recordedEnd });
}
