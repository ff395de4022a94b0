import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { Logger } from "pino";
import { IdempotencyConflictError, InvalidRequestError } from "../../domain/errors.ts";
import { givenMessage } from "../../domain/message-rows.ts";
import { getMessage } from "../../domain/messages.ts";
import type { ReplyControlDeps } from "../../domain/reply-control.ts";
import { idempotently, type IdempotencyDeps } from "../idempotency.ts";
import { lostCompletionEnd, openReplyEvents } from "../reply-follow.ts";
import { serveInlineCompletion, startStatelessCompletion } from "../../domain/stateless-completions.ts";
import { storedHistoryPrefixLength } from "../../domain/history-prefix.ts";
import { appendTurn, type TurnDeps } from "../../domain/turns.ts";
import type { ReplyEventFollower } from "../../streams/reply-event-follower.ts";
import { chatCompletionResponse, chatCompletionStreamResponse, type RelayOptions } from "../chat-completions/relay.ts";
import {
  chatCompletionRequestSchema,
  chatCompletionSchema,
  toChatMessages,
  toSamplingParams,
  unansweredToolResult,
} from "../chat-completions/wire.ts";
import type { AppEnv } from "../env.ts";
import { validationHook } from "../validation.ts";
import { chatCompletionChunksExample, chatCompletionExample, chatCompletionRequestExample } from "./examples.ts";
import { conversationIdParam, errorResponse, jsonBody, jsonOrEventStreamResponse } from "./schemas.ts";

export interface ChatCompletionRouteDeps extends TurnDeps, ReplyControlDeps, IdempotencyDeps {
  follower: ReplyEventFollower;
  heartbeatMs: number;
  log: Logger;
}

const responses = {
  200: jsonOrEventStreamResponse(
    chatCompletionSchema,
    "A `chat.completion`, or with `stream: true` a `text/event-stream` of `chat.completion.chunk`s " +
      "(the last one with `finish_reason` and `usage`) ending with `data: [DONE]`.",
    "`chat.completion.chunk` data lines, then `data: [DONE]`.",
    { json: chatCompletionExample, events: chatCompletionChunksExample },
  ),
  400: errorResponse(
    "Invalid or unsupported input, naming the field; or the upstream refused the request (its own 4xx status, type, code " +
      "and param are answered, with `x-should-retry: false` as on every 4xx but 408 and 429).",
  ),
  404: errorResponse("The model is not served (or the conversation does not exist)."),
  502: errorResponse("The upstream failed before answering."),
  503: errorResponse("The queue is unavailable."),
  504: errorResponse("The upstream timed out."),
};

const stateless = createRoute({
  method: "post",
  path: "/chat/completions",
  operationId: "createChatCompletion",
  tags: ["Chat completions"],
  summary: "The plain chat-completions API (stateless)",
  request: { body: jsonBody(chatCompletionRequestSchema, chatCompletionRequestExample) },
  responses,
});

const bound = createRoute({
  method: "post",
  path: "/conversations/{conversation_id}/chat/completions",
  operationId: "createConversationChatCompletion",
  tags: ["Chat completions"],
  summary: "The chat-completions API bound to a conversation",
  description:
    "Send only the new messages: the stored system prompt and history are prepended, and the new messages and the " +
    "reply are stored. A request that begins with the whole stored history (as chat frameworks send it, the system " +
    "prompt optionally first) stores only what follows it. Point an SDK's base URL at `…/v1/conversations/{id}`.",
  request: { params: z.object({ conversation_id: conversationIdParam }), body: jsonBody(chatCompletionRequestSchema, {
      model: "parley-sim-1",
      messages: [{ role: "user", content: "Best day trip from Lisbon?" }],
    }),
  },
  responses: { ...responses, 409: errorResponse("A reply is in flight in this conversation.") },
});

function respond(c: Context<AppEnv>, deps: ChatCompletionRouteDeps, stream: boolean, relay: Omit<RelayOptions, "heartbeatMs" | "log">) {
  const opts: RelayOptions = { ...relay, heartbeatMs: deps.heartbeatMs, log: c.var.log };
  return stream ? chatCompletionStreamResponse(c, opts) : chatCompletionResponse(c, opts);
}

export function chatCompletionRoutes(deps: ChatCompletionRouteDeps) {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(stateless, async (c) => {
      const body = c.req.valid("json");
      const stream = body.stream === true;
      const keyed = c.req.header("idempotency-key") !== undefined;
      const relayFor = (id: string, created: number) => ({
        id,
        model: body.model,
        created,
        follow: (signal: AbortSignal) =>
          deps.follower.follow(deps.replyEvents.key(id), null, { signal, recordedEnd: lostCompletionEnd(deps.jobQueue, id) }),
      });
      const unanswered = unansweredToolResult(body.messages);
      if (unanswered !== null) {
        throw new InvalidRequestError(
          "A tool message must answer a tool call of an earlier assistant message (its tool_call_id matches none).",
          `messages.${unanswered}.tool_call_id`,
        );
      }
      const params = toSamplingParams(body, await c.req.json());
      const request = {
        model: body.model,
        messages: toChatMessages(body.messages, { sendReasoning: body.send_reasoning === true }),
        params,
        upstreamStream: stream,
        requestId: c.var.requestId,
      };
      if (!keyed) {
        // Nobody can resume a call without a key (docs/GUIDE.md, "What is durable"): served here, not queued. It
        // stops when its client leaves, or when the deadline answered 503 before it could start.
        const clientGone = c.var.deadline ? AbortSignal.any([c.req.raw.signal, c.var.deadline]) : c.req.raw.signal;
        const call = await serveInlineCompletion({ ...deps, log: c.var.log }, c.var.tenantId, request, clientGone);
        c.var.liftDeadline?.();
        const created = Math.floor(Date.now() / 1000);
        return respond(c, deps, stream, { id: call.id, model: body.model, created, follow: call.follow }) as never;
      }
      return (await idempotently(c, deps, body, {
        perform: async () => {
          // Nothing is stored for a stateless call: a keyed one keeps its events as long as its key, and
          // runs on when its client leaves, since a retry with its key is answered with it.
          const { id } = await startStatelessCompletion(deps, c.var.tenantId, {
            ...request,
            retainEventsSeconds: Math.ceil(deps.idempotencyTtlMs / 1000),
          });
          const created = Math.floor(Date.now() / 1000);
          return { result: { kind: "completion", completionId: id, created }, value: { id, created } };
        },
        respond: ({ id, created }) => respond(c, deps, stream, relayFor(id, created)),
        replay: async (result) => {
          if (result.kind !== "completion" || !(await deps.replyEvents.exists(result.completionId))) {
            throw new IdempotencyConflictError("The first answer to this Idempotency-Key is no longer available.", "idempotency_replay_unavailable");
          }
          return respond(c, deps, stream, relayFor(result.completionId, result.created));
        },
      })) as never;
    })
    .openapi(bound, async (c) => {
      const body = c.req.valid("json");
      const stream = body.stream === true;
      const tenantId = c.var.tenantId;
      const conversationId = c.req.valid("param").conversation_id;
      // A conversation stores one reply per turn.
      if (typeof body.n === "number" && body.n > 1) {
        throw new InvalidRequestError("Only n = 1 is supported on a conversation: it stores one reply per turn.", "n");
      }
      const messages = body.messages.map((m) => givenMessage(m));
      const last = messages.at(-1)?.role;
      if (last !== "user" && last !== "tool") {
        throw new InvalidRequestError("The last message must be the user's or a tool result: it is what the reply answers.", "messages");
      }
      // n is 1 here: nothing to store.
      const { n: _n, ...params } = toSamplingParams(body, await c.req.json());
      const relayFor = async (replyId: string, created: number) => {
        c.header("x-parley-message-id", replyId);
        const follow = await openReplyEvents(deps, { tenantId, conversationId, replyId, lastEventId: null });
        return respond(c, deps, stream, { id: replyId, model: body.model, created, follow });
      };
      return (await idempotently(c, deps, body, {
        perform: async () => {
          // A full-history client resends what is stored: only what follows it is the new turn.
          const stored = await storedHistoryPrefixLength(deps.db, tenantId, conversationId, messages);
          const turn = await appendTurn(deps, tenantId, conversationId, {
            messages: messages.slice(stored),
            reply: true,
            model: body.model,
            params,
            upstreamStream: stream,
            requestId: c.var.requestId,
            signal: c.var.deadline,
            param: "messages",
          });
          if (!turn.reply) throw new Error("a bound chat completion stored no reply");
          return {
            result: { kind: "turn", conversationId, messageIds: turn.messages.map((m) => m.id), replyId: turn.reply.id },
            value: turn.reply,
          };
        },
        respond: (reply) => relayFor(reply.id, Math.floor(reply.createdAt.getTime() / 1000)),
        replay: async (result) => {
          if (result.kind !== "turn" || !result.replyId) throw new Error(`an idempotency record of kind ${result.kind} on a completion`);
          const reply = await getMessage(deps, tenantId, conversationId, result.replyId);
          return relayFor(reply.id, Math.floor(reply.createdAt.getTime() / 1000));
        },
      })) as never;
    });
}
