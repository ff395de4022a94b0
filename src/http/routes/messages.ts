import type { Context } from "hono";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Logger } from "pino";
import { getMessage, listMessages } from "../../domain/messages.ts";
import { cancelReply, type ReplyControlDeps } from "../../domain/reply-control.ts";
import type { MessageRow } from "../../db/schema.ts";
import { idempotently, type IdempotencyDeps } from "../idempotency.ts";
import { openReplyEvents, recordedReplyEnd } from "../reply-follow.ts";
import { pageQuerySchema } from "../../domain/pagination.ts";
import { listOf, messageSchema, toMessageResource, type MessageResource } from "../../domain/resources.ts";
import { regenerateReply, regenerateReplySchema } from "../../domain/regenerate.ts";
import { appendMessage, appendMessageSchema, type TurnDeps } from "../../domain/turns.ts";
import { awaitReplyEnd, type ReplyEventFollower } from "../../streams/reply-event-follower.ts";
import type { AppEnv } from "../env.ts";
import { replyEventsResponse } from "../sse.ts";
import { validationHook } from "../validation.ts";
import * as ex from "./examples.ts";
import {
  conversationIdParam,
  errorResponse,
  jsonBody,
  jsonOrEventStreamResponse,
  jsonResponse,
  messageIdParam,
} from "./schemas.ts";

export interface MessageRouteDeps extends TurnDeps, ReplyControlDeps, IdempotencyDeps {
  follower: ReplyEventFollower;
  heartbeatMs: number;
  log: Logger;
}

const tags = ["Messages"];
const conversationParams = z.object({ conversation_id: conversationIdParam });
const messageParams = z.object({ conversation_id: conversationIdParam, message_id: messageIdParam });

const turnSchema = z
  .object({ message: messageSchema, reply: messageSchema.nullable() })
  .openapi("Turn", { description: "The appended message, and the assistant's reply when one was asked for." });

const append = createRoute({
  method: "post",
  path: "/{conversation_id}/messages",
  operationId: "createMessage",
  tags,
  summary: "Append a message and generate the reply",
  description:
    "With `stream: true` the answer is `text/event-stream`: `message.created` (the message, then the queued reply), " +
    "`message.delta`… (`delta`: `content`, `reasoning`, `tool_calls` fragments as OpenAI streams them, `logprobs`), one of `message.completed` | `message.failed` | `message.cancelled`, then `done` with `[DONE]`. " +
    "Every event has an `id:` to resume from.",
  request: { params: conversationParams, body: jsonBody(appendMessageSchema, ex.appendMessageExample) },
  responses: {
    201: jsonOrEventStreamResponse(
      turnSchema,
      "Stored; `reply` is the finished reply (or null when none was asked for).",
      "The reply's events.",
      { json: ex.turnExample, events: ex.messageEventsExample },
    ),
    202: jsonResponse(turnSchema, "Stored; the reply is queued (`wait: false`).", ex.queuedTurnExample),
    400: errorResponse("Invalid input."),
    404: errorResponse("No such conversation, or its model is not served."),
    409: errorResponse("A reply is in flight in this conversation (`conversation_busy`)."),
    413: errorResponse("Images over MAX_IMAGE_BYTES_PER_MESSAGE (`image_too_large`), or a body over MAX_BODY_BYTES."),
    503: errorResponse("The queue is unavailable; nothing was left in flight."),
  },
});

const regenerate = createRoute({
  method: "post",
  path: "/{conversation_id}/messages/{message_id}/regenerate",
  operationId: "regenerateMessage",
  tags,
  summary: "Regenerate the conversation's last reply",
  description:
    "A new reply replaces the last one, which must have ended: it takes the old reply's seq, and the old reply is deleted. " +
    "Answers like an append: the new reply (201, or 202 with `wait: false`), or its events with `stream: true`.",
  request: { params: messageParams, body: jsonBody(regenerateReplySchema, ex.regenerateExample) },
  responses: {
    201: jsonOrEventStreamResponse(messageSchema, "The new reply, finished.", "The new reply's events.", {
      json: ex.replyExample,
      events: ex.messageEventsExample.split("\n\n").slice(1).join("\n\n"),
    }),
    202: jsonResponse(messageSchema, "The new reply, queued (`wait: false`).", ex.queuedReplyExample),
    400: errorResponse("Not a reply, or not the last message (`not_a_reply`, `not_last_reply`)."),
    404: errorResponse("No such conversation or message."),
    409: errorResponse("The reply is still in flight (`conversation_busy`)."),
  },
});

const list = createRoute({
  method: "get",
  path: "/{conversation_id}/messages",
  operationId: "listMessages",
  tags,
  summary: "The history, oldest first",
  request: { params: conversationParams, query: pageQuerySchema },
  responses: {
    200: jsonResponse(listOf(messageSchema, "MessageList"), "A page of messages.", ex.messageListExample),
    400: errorResponse("Invalid paging."),
    404: errorResponse("No such conversation."),
  },
});

const get = createRoute({
  method: "get",
  path: "/{conversation_id}/messages/{message_id}",
  operationId: "getMessage",
  tags,
  summary: "One message; a reply in flight shows its content so far",
  request: { params: messageParams },
  responses: {
    200: jsonResponse(messageSchema, "The message.", ex.replyExample),
    404: errorResponse("No such conversation or message."),
  },
});

const events = createRoute({
  method: "get",
  path: "/{conversation_id}/messages/{message_id}/events",
  operationId: "streamMessageEvents",
  tags,
  summary: "Follow a reply's events (SSE), from the start or after Last-Event-ID",
  description:
    "The same events as a streamed append, with the same ids. Resume with the `Last-Event-ID` header (or the " +
    "`last_event_id` query parameter) to get exactly the events after it. A finished reply is replayed and the stream " +
    "ends; once its events have expired from Redis it is replayed from the stored message (a delta with the whole " +
    "content, left out when resuming, then its end event and `done`).",
  request: {
    params: messageParams,
    query: z.object({ last_event_id: z.string().optional().openapi({ example: "1764045600123-0" }) }),
  },
  responses: {
    200: {
      description: "The reply's events.",
      content: { "text/event-stream": { schema: z.string(), example: ex.messageEventsExample.split("\n\n").slice(1).join("\n\n") } },
    },
    400: errorResponse("Not a reply, or a malformed Last-Event-ID."),
    404: errorResponse("No such conversation or message."),
  },
});

const cancel = createRoute({
  method: "post",
  path: "/{conversation_id}/messages/{message_id}/cancel",
  operationId: "cancelMessage",
  tags,
  summary: "Stop a reply in flight; the content it had is kept",
  request: { params: messageParams },
  responses: {
    200: jsonResponse(messageSchema, "The reply: `cancelled`, or as it was if it had already ended.", ex.cancelledReplyExample),
    400: errorResponse("Not a reply."),
    404: errorResponse("No such conversation or message."),
  },
});

export function messageRoutes(deps: MessageRouteDeps) {
  const streamReply = async (c: Context<AppEnv>, tenantId: string, conversationId: string, replyId: string) => {
    const follow = await openReplyEvents(deps, { tenantId, conversationId, replyId, lastEventId: null });
    return replyEventsResponse(c, { follow, heartbeatMs: deps.heartbeatMs, log: c.var.log });
  };
  /** A reply as a request answers with it: queued (202), or waited for until it ends (201). */
  const settleReply = async (
    reply: MessageRow,
    wait: boolean,
    signal: AbortSignal,
  ): Promise<{ status: 201 | 202; reply: MessageResource }> => {
    if (!wait) return { status: 202, reply: toMessageResource(reply) };
    if (reply.status !== "queued" && reply.status !== "in_progress") return { status: 201, reply: toMessageResource(reply) };
    const end = await awaitReplyEnd(deps.follower, deps.replyEvents.key(reply.id), signal, recordedReplyEnd(deps.db, reply));
    return { status: 201, reply: end as MessageResource };
  };

  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(append, async (c) => {
      const body = c.req.valid("json");
      const tenantId = c.var.tenantId;
      const conversationId = c.req.valid("param").conversation_id;
      const respond = async (message: MessageRow, reply: MessageRow | null) => {
        const appended = toMessageResource(message);
        if (!reply) return c.json({ message: appended, reply: null }, 201);
        if (body.stream) return streamReply(c, tenantId, conversationId, reply.id);
        const settled = await settleReply(reply, body.wait, c.req.raw.signal);
        // A reply that failed before producing anything took the message out of history: show it as stored now.
        const shown =
          settled.reply.status === "failed"
            ? toMessageResource(await getMessage(deps, tenantId, conversationId, message.id).catch(() => message))
            : appended;
        return c.json({ message: shown, reply: settled.reply }, settled.status);
      };
      return (await idempotently(c, deps, body, {
        perform: async () => {
          const turn = await appendMessage(deps, tenantId, conversationId, body, c.var.requestId, c.var.deadline);
          return {
            result: { kind: "turn", conversationId, messageIds: [turn.message.id], replyId: turn.reply?.id ?? null },
            value: turn,
          };
        },
        respond: (turn) => respond(turn.message, turn.reply),
        replay: async (result) => {
          if (result.kind !== "turn") throw new Error(`an idempotency record of kind ${result.kind} on an append`);
          const message = await getMessage(deps, tenantId, conversationId, result.messageIds[0]!);
          const reply = result.replyId ? await getMessage(deps, tenantId, conversationId, result.replyId) : null;
          return respond(message, reply);
        },
      })) as never;
    })
    .openapi(list, async (c) => {
      const page = await listMessages(deps, c.var.tenantId, c.req.valid("param").conversation_id, c.req.valid("query"));
      return c.json({ ...page, data: page.data.map(toMessageResource) }, 200);
    })
    .openapi(get, async (c) => {
      const { conversation_id, message_id } = c.req.valid("param");
      const row = await getMessage(deps, c.var.tenantId, conversation_id, message_id);
      return c.json(toMessageResource(row), 200);
    })
    .openapi(events, async (c) => {
      const { conversation_id, message_id } = c.req.valid("param");
      const lastEventId = c.req.header("last-event-id") ?? c.req.valid("query").last_event_id ?? null;
      const follow = await openReplyEvents(deps, {
        tenantId: c.var.tenantId,
        conversationId: conversation_id,
        replyId: message_id,
        lastEventId,
      });
      return replyEventsResponse(c, { follow, heartbeatMs: deps.heartbeatMs, log: c.var.log }) as never;
    })
    .openapi(regenerate, async (c) => {
      const body = c.req.valid("json");
      const tenantId = c.var.tenantId;
      const { conversation_id: conversationId, message_id: replacedId } = c.req.valid("param");
      const respond = async (reply: MessageRow) => {
        if (body.stream) return streamReply(c, tenantId, conversationId, reply.id);
        const settled = await settleReply(reply, body.wait, c.req.raw.signal);
        return c.json(settled.reply, settled.status);
      };
      return (await idempotently(c, deps, body, {
        perform: async () => {
          const reply = await regenerateReply(deps, tenantId, conversationId, replacedId, body, c.var.requestId);
          return { result: { kind: "turn", conversationId, messageIds: [], replyId: reply.id }, value: reply };
        },
        respond,
        replay: async (result) => {
          if (result.kind !== "turn" || !result.replyId) throw new Error(`an idempotency record of kind ${result.kind} on a regenerate`);
          return respond(await getMessage(deps, tenantId, conversationId, result.replyId));
        },
      })) as never;
    })
    .openapi(cancel, async (c) => {
      const { conversation_id, message_id } = c.req.valid("param");
      const row = await cancelReply(deps, c.var.tenantId, conversation_id, message_id);
      return c.json(toMessageResource(row), 200);
    });
}
