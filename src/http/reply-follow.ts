import { Readable } from "node:stream";
import { replyEventSource, type ReplyControlDeps } from "../domain/reply-control.ts";
import type { ReplyEventFollower } from "../streams/reply-event-follower.ts";
import type { ReplyEvent } from "../streams/reply-events.ts";

export type FollowReply = (signal: AbortSignal) => AsyncIterable<ReplyEvent>;

/**
 * A reply's events for a response: live from its stream while Redis has it,
 * else replayed from the stored message.
 */
export async function openReplyEvents(
  deps: ReplyControlDeps & { follower: ReplyEventFollower },
  where: { tenantId: string; conversationId: string; replyId: string; lastEventId: string | null },
): Promise<FollowReply> {
  const source = await replyEventSource(deps, where.tenantId, where.conversationId, where.replyId, where.lastEventId);
  return source.kind === "live"
    ? (signal) => deps.follower.follow(source.key, source.afterId, signal)
    : () => Readable.from(source.events);
}
