import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { Logger } from "pino";
import { InvalidRequestError } from "../../domain/errors.ts";
import { startStatelessCompletion } from "../../domain/stateless-completions.ts";
import { appendTurn, type TurnDeps } from "../../domain/turns.ts";
import type { ReplyEventFollower } from "../../streams/reply-event-follower.ts";
import { chatCompletionResponse, chatCompletionStreamResponse, type RelayOptions } from "../chat-completions/relay.ts";
import {
  chatCompletionRequestSchema,
  chatCompletionSchema,
  toChatMessages,
  toSamplingParams,
} from "../chat-completions/wire.ts";
import type { AppEnv } from "../env.ts";
import { validationHook } from "../validation.ts";
import { conversationIdParam, errorResponse, jsonBody } from "./schemas.ts";

export interface ChatCompletionRouteDeps extends TurnDeps {
  follower: ReplyEventFollower;
  heartbeatMs: number;
  log: Logger;
}

const responses = {
  200: {
    description:
      "A `chat.completion`, or with `stream: true` a `text/event-stream` of `chat.completion.chunk`s " +
      "(the last one with `finish_reason` and `usage`) ending with `data: [DONE]`.",
    content: {
      "application/json": { schema: chatCompletionSchema },
      "text/event-stream": { schema: z.string() },
    },
  },
  400: errorResponse("Invalid or unsupported input, naming the field."),
  404: errorResponse("The model is not served (or the conversation does not exist)."),
  502: errorResponse("The upstream failed before answering."),
  503: errorResponse("The queue is unavailable."),
  504: errorResponse("The upstream timed out."),
};

const stateless = createRoute({
  method: "post",
  path: "/chat/completions",
  summary: "The plain chat-completions API (stateless)",
  request: { body: jsonBody(chatCompletionRequestSchema) },
  responses,
});

const bound = createRoute({
  method: "post",
  path: "/conversations/{conversation_id}/chat/completions",
  summary: "The chat-completions API bound to a conversation",
  description:
    "Send only the new messages: the stored system prompt and history are prepended, and the new messages and the " +
    "reply are stored. Point an SDK's base URL at `…/v1/conversations/{id}`.",
  request: { params: z.object({ conversation_id: conversationIdParam }), body: jsonBody(chatCompletionRequestSchema) },
  responses: { ...responses, 409: errorResponse("A reply is in flight in this conversation.") },
});

function respond(c: Context<AppEnv>, deps: ChatCompletionRouteDeps, stream: boolean, relay: Omit<RelayOptions, "follow" | "heartbeatMs" | "log">) {
  const key = deps.replyEvents.key(relay.id);
  const opts: RelayOptions = {
    ...relay,
    follow: (signal) => deps.follower.follow(key, null, signal),
    heartbeatMs: deps.heartbeatMs,
    log: c.var.log,
  };
  return stream ? chatCompletionStreamResponse(c, opts) : chatCompletionResponse(c, opts);
}

export function chatCompletionRoutes(deps: ChatCompletionRouteDeps) {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(stateless, async (c) => {
      const body = c.req.valid("json");
      const stream = body.stream === true;
      const { id } = await startStatelessCompletion(deps, c.var.tenantId, {
        model: body.model,
        messages: toChatMessages(body.messages),
        params: toSamplingParams(body),
        upstreamStream: stream,
      });
      return (await respond(c, deps, stream, { id, model: body.model, created: Math.floor(Date.now() / 1000) })) as never;
    })
    .openapi(bound, async (c) => {
      const body = c.req.valid("json");
      const stream = body.stream === true;
      const messages = toChatMessages(body.messages);
      if (messages.at(-1)?.role !== "user") {
        throw new InvalidRequestError("The last message must be the user's: it is what the reply answers.", "messages");
      }
      const { reply } = await appendTurn(deps, c.var.tenantId, c.req.valid("param").conversation_id, {
        messages,
        reply: true,
        model: body.model,
        params: toSamplingParams(body),
        upstreamStream: stream,
      });
      if (!reply) throw new Error("a bound chat completion stored no reply");
      c.header("x-parley-message-id", reply.id);
      const created = Math.floor(reply.createdAt.getTime() / 1000);
      return (await respond(c, deps, stream, { id: reply.id, model: body.model, created })) as never;
    });
}
