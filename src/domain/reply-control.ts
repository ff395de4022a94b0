import type { ReplySlots } from "../access/reply-slots.ts";
import type { MessageRow } from "../db/schema.ts";
import { compareStreamIds, isStreamId, type ReplyEvent, type ReplyEventLog } from "../streams/reply-events.ts";
import { InvalidRequestError } from "./errors.ts";
import { getMessage, streamedColumns, streamedSoFar, type MessageDeps } from "./messages.ts";
import { finishReply, isInFlight } from "./replies.ts";
import { deltaEventData, isEmptyDelta, storedReplyDelta } from "./reply-delta.ts";
import { toMessageResource } from "./resources.ts";

/** Following and cancelling a reply, from any API instance. */

export interface ReplyControlDeps extends MessageDeps {
  replyEvents: ReplyEventLog;
  replySlots: ReplySlots;
  /** Tells whichever worker generates the reply to stop (and abort its upstream call). */
  signalCancel(replyId: string): Promise<void>;
}

async function getReply(deps: MessageDeps, tenantId: string, conversationId: string, messageId: string): Promise<MessageRow> {
  const message = await getMessage(deps, tenantId, conversationId, messageId);
  if (message.role !== "assistant") {
    throw new InvalidRequestError(`Message '${messageId}' is a ${message.role} message, not a reply.`, "message_id");
  }
  return message;
}

const terminalEvent = { completed: "message.completed", failed: "message.failed", cancelled: "message.cancelled" } as const;

export type ReplyEventSource =
  | { kind: "live"; key: string; afterId: string | null; reply: MessageRow }
  | { kind: "stored"; events: ReplyEvent[] };

/**
 * Where a follower reads a reply's events from: the reply's stream while it
 * is retained (in flight, or ended within the retention), else the stored
 * message: one delta with the whole content (left out when resuming, since
 * the end event carries the content too), the end event, and `done`.
 */
export async function replyEventSource(
  deps: MessageDeps,
  tenantId: string,
  conversationId: string,
  messageId: string,
  lastEventId: string | null,
): Promise<ReplyEventSource> {
  if (lastEventId !== null && !isStreamId(lastEventId)) {
    throw new InvalidRequestError("Last-Event-ID must be an event id from this stream, like 1764045600123-0.", "last_event_id");
  }
  const reply = await getReply(deps, tenantId, conversationId, messageId);
  if (isInFlight(reply.status) || (await deps.replyEvents.exists(reply.id))) {
    return { kind: "live", key: deps.replyEvents.key(reply.id), afterId: lastEventId, reply };
  }
  const ms = (reply.completedAt ?? reply.createdAt).getTime();
  const events: ReplyEvent[] = [];
  const whole = storedReplyDelta(reply);
  if (lastEventId === null && !isEmptyDelta(whole)) {
    events.push({ id: `${ms}-0`, event: "message.delta", data: JSON.stringify({ id: reply.id, delta: deltaEventData(whole) }) });
  }
  events.push(
    { id: `${ms}-1`, event: terminalEvent[reply.status as keyof typeof terminalEvent], data: JSON.stringify(toMessageResource(reply)) },
    { id: `${ms}-2`, event: "done", data: "[DONE]" },
  );
  // A resume from one of these ids (a follower ended from the stored row gets them too) gets what follows it only.
  return { kind: "stored", events: lastEventId === null ? events : events.filter((e) => compareStreamIds(e.id, lastEventId) > 0) };
}

/**
 * Stops a reply in flight: stored as `cancelled` with the content it had,
 * followers get `message.cancelled`, and the worker aborts its upstream call.
 * A reply that has already ended is returned as it is.
 */
export async function cancelReply(
  deps: ReplyControlDeps,
  tenantId: string,
  conversationId: string,
  messageId: string,
): Promise<MessageRow> {
  const reply = await getReply(deps, tenantId, conversationId, messageId);
  if (!isInFlight(reply.status)) return reply;
  // Sealed first: the worker's deltas are refused from here on, so the content read next is all the stream
  // will ever carry, and the stored reply agrees with what followers were sent.
  await deps.replyEvents.seal(reply.id);
  const streamed = await streamedSoFar(deps.replyEvents, reply.id);
  // Stored before the end is written, so the worker's own end (an interrupted call) finds the reply ended and stands down.
  const cancelled = await finishReply(deps.db, reply.id, { status: "cancelled", ...streamedColumns(streamed) });
  // Null: it ended by itself in between; that end stands.
  if (!cancelled) return getReply(deps, tenantId, conversationId, messageId);
  // A cancelled reply no longer counts against its tenant, though its worker may take a moment to stop.
  await deps.replySlots.release(tenantId, reply.id);
  await deps.signalCancel(reply.id);
  // Ends the stream once: a delta the worker writes after this (it may not have stopped yet) is refused.
  await deps.replyEvents.end(reply.id, [
    { event: "message.cancelled", data: toMessageResource(cancelled) },
    { event: "done", data: "[DONE]" },
  ]);
  return cancelled;
}
