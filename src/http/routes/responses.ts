import { Readable } from "node:stream";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { Logger } from "pino";
import type { MessageRow } from "../../db/schema.ts";
import { ConversationBusyError, IdempotencyConflictError, InvalidRequestError, NotFoundError } from "../../domain/errors.ts";
import { newResponseId } from "../../domain/ids.ts";
import { streamedColumns, streamedSoFar } from "../../domain/messages.ts";
import type { ReplyControlDeps } from "../../domain/reply-control.ts";
import { isInFlight } from "../../domain/replies.ts";
import {
  cancelResponse,
  createResponse,
  deleteResponse,
  findResponse,
  historyAfterResponse,
  messagesByIds,
  responseInput,
  type StoredResponse,
} from "../../domain/responses.ts";
import { serveInlineCompletion, startStatelessCompletion, type CompletionEnd } from "../../domain/stateless-completions.ts";
import type { TurnDeps } from "../../domain/turns.ts";
import { toChatMessage } from "../../domain/history.ts";
import type { GivenMessage } from "../../domain/message-rows.ts";
import type { ChatMessage } from "../../providers/types.ts";
import type { ReplyEventFollower } from "../../streams/reply-event-follower.ts";
import { terminalEventNames, type ReplyEvent } from "../../streams/reply-events.ts";
import type { AppEnv } from "../env.ts";
import { errorBody, ReplyFailedError, sendError } from "../errors.ts";
import { idempotently, type IdempotencyDeps } from "../idempotency.ts";
import { lostCompletionEnd, openReplyEvents, type FollowReply } from "../reply-follow.ts";
import {
  inputItemsToMessages,
  itemListSchema,
  messageToItems,
  parseItemId,
  referencedItemIds,
  type InputItem,
  type Item,
} from "../responses/items.ts";
import {
  responseBaseOf,
  responseBaseSchema,
  responseObjectSchema,
  responseOutcomeOfCompletion,
  responseOutcomeOfReply,
  toResponseObject,
  type ResponseBase,
  type ResponseObject,
} from "../responses/response-object.ts";
import { conversationIdOf, PARLEY_TURN_KEYS, responseRequestSchema, toChatParams } from "../responses/request.ts";
import { ResponseEventTranslator } from "../responses/stream-events.ts";
import { replyEventsResponse } from "../sse.ts";
import { validationHook } from "../validation.ts";
import * as ex from "./examples.ts";
import { errorResponse, includeOf, includeQuery, jsonBody, jsonOrEventStreamResponse, jsonResponse } from "./schemas.ts";

/**
 * OpenAI's Responses API, translated onto Parley's turns (src/domain/responses.ts):
 * a stored response is a turn whose reply is generated, relayed, cancelled and
 * resumed like any other; `store: false` runs as a stateless completion.
 * The stream is the reply's own event log, translated event by event with
 * numbers that are the same on every replay (src/http/responses/stream-events.ts).
 */

export interface ResponseRouteDeps extends TurnDeps, ReplyControlDeps, IdempotencyDeps {
  follower: ReplyEventFollower;
  heartbeatMs: number;
  log: Logger;
}

const responseIdParam = z.string().openapi({ param: { name: "response_id", in: "path" }, example: "resp_01jf3t8vvaf8s9k0d7k6x1s2y3" });
const params = z.object({ response_id: responseIdParam });

const tags = ["Responses"];
const eventsDescription =
  "With `stream: true`: the response's events as SSE (`event:` the type, `data:` the event with its `sequence_number`): " +
  "`response.created`, `response.in_progress`, output item, content part, text, reasoning and function-call argument " +
  "deltas and their ends, then `response.completed`, `response.incomplete` (also for a cancelled response, whose `status` says `cancelled`) or `response.failed`.";

const create = createRoute({
  method: "post",
  path: "/responses",
  operationId: "createResponse",
  tags,
  summary: "Create a response (OpenAI's Responses API, on any chat-completions model)",
  description:
    "With `conversation`, the response is a turn of that conversation: its stored history (fitted by the conversation's " +
    "context strategy, or `truncation`) plus the input goes to the model, and input and output are stored as its items. " +
    "With `previous_response_id`, it continues that response's chain (`instructions` are not carried over). " +
    "`background: true` answers at once (status `queued`); the response runs on the worker pool and can be retrieved, " +
    "followed (`GET …?stream=true`) and cancelled. `store: false` stores nothing (and cannot be retrieved).",
  request: { body: jsonBody(responseRequestSchema, ex.createResponseExample) },
  responses: {
    200: jsonOrEventStreamResponse(responseObjectSchema, "The response (`queued` when in the background).", eventsDescription, {
      json: ex.responseExample,
      events: ex.responseEventsExample,
    }),
    400: errorResponse(
      "Invalid or unsupported input, naming the field; `conversation_locked` when the conversation has a response in progress; " +
        "or the upstream refused the request (its own status, type, code and param).",
    ),
    404: errorResponse("The model is not served, or the conversation, previous response or a referenced item does not exist."),
    502: errorResponse("The upstream failed before answering."),
    503: errorResponse("The queue is unavailable."),
    504: errorResponse("The upstream timed out."),
  },
});

const retrieve = createRoute({
  method: "get",
  path: "/responses/{response_id}",
  operationId: "getResponse",
  tags,
  summary: "Get a response, or follow it (`stream=true`)",
  description:
    "`stream=true` replays the response's events from the start (or after `starting_after`) and follows it live, from " +
    "any API instance, with the same sequence numbers as the first stream while its events are retained " +
    "(REPLY_EVENTS_TTL_SECONDS after it ended; later, a shorter stream rebuilt from the stored response).",
  request: {
    params,
    query: z.object({
      stream: z.enum(["true", "false"]).optional(),
      starting_after: z.coerce.number().int().min(-1).optional().openapi({ description: "Send only events with a larger `sequence_number`." }),
      ...includeQuery,
    }),
  },
  responses: {
    200: jsonOrEventStreamResponse(responseObjectSchema, "The response.", eventsDescription, {
      json: ex.responseExample,
      events: ex.responseEventsExample,
    }),
    404: errorResponse("No such response (or it was created with `store: false`)."),
  },
});

const cancel = createRoute({
  method: "post",
  path: "/responses/{response_id}/cancel",
  operationId: "cancelResponse",
  tags,
  summary: "Cancel a response in progress (its partial output is kept)",
  request: { params },
  responses: {
    200: jsonResponse(responseObjectSchema, "The response as it ended (a response that had already ended, as it is).", {
      ...ex.responseExample,
      background: true,
      status: "cancelled",
    }),
    404: errorResponse("No such response."),
  },
});

const remove = createRoute({
  method: "delete",
  path: "/responses/{response_id}",
  operationId: "deleteResponse",
  tags,
  summary: "Delete a response",
  description: "A response in progress is cancelled first. Its items stay in its conversation.",
  request: { params },
  responses: {
    200: jsonResponse(
      z.object({ id: z.string(), object: z.literal("response.deleted"), deleted: z.literal(true) }).openapi("ResponseDeleted"),
      "Deleted.",
      ex.responseDeletedExample,
    ),
    404: errorResponse("No such response."),
  },
});

const inputItems = createRoute({
  method: "get",
  path: "/responses/{response_id}/input_items",
  operationId: "listInputItems",
  tags,
  summary: "List the items a response was given",
  request: {
    params,
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(20),
      order: z.enum(["asc", "desc"]).default("desc"),
      after: z.string().optional().openapi({ description: "An item id: list the items after it (in `order`)." }),
      ...includeQuery,
    }),
  },
  responses: {
    200: jsonResponse(itemListSchema, "The input items.", ex.inputItemsExample),
    404: errorResponse("No such response, or `after` names no item of it."),
  },
});

/** The stored response as an object; a reply in flight shows the output streamed so far. */
async function storedResponseObject(deps: ResponseRouteDeps, found: StoredResponse, include?: readonly string[]): Promise<ResponseObject> {
  const base = responseBaseSchema.parse(found.response.request);
  if (!found.reply) return toResponseObject(base, { status: "completed", output: [], usage: null, error: null, finishReason: null, completedAt: null });
  let reply: MessageRow = found.reply;
  if (isInFlight(reply.status)) reply = { ...reply, ...streamedColumns(await streamedSoFar(deps.replyEvents, reply.id)) };
  return toResponseObject(base, responseOutcomeOfReply(reply, { include: include ?? base.include }));
}

/** The translated events of a reply's log as SSE: every event whose number is past `startingAfter`, until the translation ends. */
function responseEventStream(
  c: Context<AppEnv>,
  deps: ResponseRouteDeps,
  follow: FollowReply,
  translator: ResponseEventTranslator,
  startingAfter = -1,
): Response {
  return replyEventsResponse(c, {
    follow,
    heartbeatMs: deps.heartbeatMs,
    log: c.var.log,
    translate: (e) =>
      translator
        .push(e)
        .filter((out) => out.sequence_number > startingAfter)
        .map((out) => ({ event: out.type, data: JSON.stringify(out) })),
    until: () => translator.finished,
  });
}

/** Waits for a reply's end event; null if the client left first. */
async function endOf(c: Context<AppEnv>, follow: FollowReply): Promise<ReplyEvent | null> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  c.req.raw.signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const e of follow(stop.signal)) if (terminalEventNames.has(e.event)) return e;
    return null;
  } finally {
    c.req.raw.signal.removeEventListener("abort", onAbort);
    stop.abort();
  }
}

/** A response that failed before producing anything answers as an error (the upstream's own 4xx when it refused), as chat completions do. */
function failedBeforeOutput(object: ResponseObject, end: { error?: { status?: number; param?: string | null; type?: string } | null }): ReplyFailedError | null {
  if (object.status !== "failed" || object.output.some((i) => i.type !== "message" || i.content.length > 0)) return null;
  const error = object.error ?? { code: "server_error", message: "The response failed." };
  return new ReplyFailedError({ ...error, type: end.error?.type ?? "server_error", status: end.error?.status, param: end.error?.param ?? null });
}

/** The stored items an input's item_references name, that the tenant can see. */
async function referencedItems(deps: ResponseRouteDeps, tenantId: string, items: InputItem[]): Promise<Map<string, Item>> {
  const ids = referencedItemIds(items);
  const found = new Map<string, Item>();
  if (ids.length === 0) return found;
  const rows = await messagesByIds(deps, tenantId, ids.flatMap((id) => parseItemId(id)?.messageId ?? []));
  for (const row of rows) for (const item of messageToItems(row)) if (ids.includes(item.id)) found.set(item.id, item);
  return found;
}

/** The events of a response whose reply is gone: it ended completed, with nothing. */
function deletedReplyEvents(replyId: string, createdAt: Date): ReplyEvent[] {
  const end = { id: replyId, status: "completed", content: "", finish_reason: null, usage: null, error: null };
  const ms = createdAt.getTime();
  return [
    { id: `${ms}-0`, event: "message.completed", data: JSON.stringify(end) },
    { id: `${ms}-1`, event: "done", data: "[DONE]" },
  ];
}

const withoutTurnKeys = (params: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(params).filter(([k]) => !(PARLEY_TURN_KEYS as readonly string[]).includes(k)));

export function responseRoutes(deps: ResponseRouteDeps) {
  const followReply = async (tenantId: string, found: StoredResponse): Promise<FollowReply> => {
    // Its reply was deleted as a conversation item: the response ended with no output, as its JSON says.
    if (!found.reply) return () => Readable.from(deletedReplyEvents(found.response.replyId, found.response.createdAt));
    return openReplyEvents(deps, { tenantId, conversationId: found.response.conversationId, replyId: found.reply.id, lastEventId: null });
  };
  const followCompletion = (id: string): FollowReply => (signal) =>
    deps.follower.follow(deps.replyEvents.key(id), null, { signal, recordedEnd: lostCompletionEnd(deps.jobQueue, id) });

  /** Answers a stored response: its events, at once (background), or once it ends. */
  const answerStored = async (c: Context<AppEnv>, found: StoredResponse, opts: { stream: boolean; background: boolean }) => {
    const base = responseBaseSchema.parse(found.response.request);
    if (opts.stream) return responseEventStream(c, deps, await followReply(c.var.tenantId, found), new ResponseEventTranslator(base, found.response.replyId));
    if (opts.background) return c.json(await storedResponseObject(deps, found), 200);
    const end = await endOf(c, await followReply(c.var.tenantId, found));
    const object = await storedResponseObject(deps, await findResponse(deps, c.var.tenantId, found.response.id));
    const failure = failedBeforeOutput(object, end ? (JSON.parse(end.data) as Parameters<typeof failedBeforeOutput>[1]) : {});
    if (failure) return sendError(c, failure, c.var.log);
    return c.json(object, 200);
  };

  /** Answers a `store: false` response from its stateless completion's events. */
  const answerUnstored = async (c: Context<AppEnv>, base: ResponseBase, call: { id: string; follow: FollowReply }, stream: boolean) => {
    if (stream) return responseEventStream(c, deps, call.follow, new ResponseEventTranslator(base, call.id));
    const end = await endOf(c, call.follow);
    if (!end) return c.json(errorBody("The client went away.", "invalid_request_error", null, "client_closed"), 400);
    const data = JSON.parse(end.data) as CompletionEnd;
    const object = toResponseObject(base, responseOutcomeOfCompletion(data, { completedAt: Math.floor(Date.now() / 1000), include: base.include }));
    const failure = failedBeforeOutput(object, data);
    if (failure) return sendError(c, failure, c.var.log);
    return c.json(object, 200);
  };

  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(create, async (c) => {
      const body = c.req.valid("json");
      const raw: unknown = await c.req.json();
      const tenantId = c.var.tenantId;
      const stream = body.stream === true;
      const background = body.background === true;
      const conversationId = conversationIdOf(body);
      if (body.store === false && conversationId !== null) {
        throw new InvalidRequestError("`store: false` stores nothing, and a conversation stores its turns: leave `store` true, or leave out `conversation`.", "store");
      }
      const items: InputItem[] =
        typeof body.input === "string" ? [{ type: "message", role: "user", content: body.input } as InputItem] : ((body.input ?? []) as InputItem[]);
      const chatParams = toChatParams(body, raw);
      const id = newResponseId();
      const base = responseBaseOf(body, { id, createdAt: Math.floor(Date.now() / 1000), conversationId }, raw);

      if (body.store === false) {
        const completion = async () => {
          const messages = inputItemsToMessages(items, { references: await referencedItems(deps, tenantId, items) });
          const history: ChatMessage[] =
            body.previous_response_id != null
              ? await historyAfterResponse(deps, tenantId, body.previous_response_id, body.model, chatParams, messages)
              : body.instructions != null
                ? [{ role: "system", content: body.instructions }]
                : [];
          return {
            model: body.model,
            // Sent as the stored messages of a turn are (history.ts), so both paths say the same to the upstream.
            messages: [...history, ...messages.map((m) => toChatMessage(storedForm(m), { sendReasoning: false }))],
            params: withoutTurnKeys(chatParams),
            upstreamStream: stream,
            requestId: c.var.requestId,
          };
        };
        if (c.req.header("idempotency-key") === undefined) {
          // Nobody can resume it (docs/GUIDE.md, "What is durable"): served by this instance, as a keyless chat completion is.
          const clientGone = c.var.deadline ? AbortSignal.any([c.req.raw.signal, c.var.deadline]) : c.req.raw.signal;
          const call = await serveInlineCompletion({ ...deps, log: c.var.log }, tenantId, await completion(), clientGone);
          c.var.liftDeadline?.();
          return answerUnstored(c, base, call, stream) as never;
        }
        return (await idempotently(c, deps, body, {
          perform: async () => {
            // Kept as long as its key, and run on when its client leaves: a retry with the key is answered with it.
            const retainEventsSeconds = Math.ceil(deps.idempotencyTtlMs / 1000);
            const { id: completionId } = await startStatelessCompletion(deps, tenantId, { ...(await completion()), retainEventsSeconds });
            return { result: { kind: "response", responseId: id, completionId, created: base.created_at }, value: completionId };
          },
          respond: (completionId) => answerUnstored(c, base, { id: completionId, follow: followCompletion(completionId) }, stream),
          replay: async (result) => {
            if (result.kind !== "response" || !result.completionId || !(await deps.replyEvents.exists(result.completionId))) {
              throw new IdempotencyConflictError("The first answer to this Idempotency-Key is no longer available.", "idempotency_replay_unavailable");
            }
            const replayed = { ...base, id: result.responseId, created_at: result.created ?? base.created_at };
            return answerUnstored(c, replayed, { id: result.completionId, follow: followCompletion(result.completionId) }, stream);
          },
        })) as never;
      }

      return (await idempotently(c, deps, body, {
        perform: async () => {
          const messages = inputItemsToMessages(items, { references: await referencedItems(deps, tenantId, items) });
          const stored = await createResponse(
            deps,
            tenantId,
            {
              model: body.model,
              messages,
              params: chatParams,
              request: base,
              ...(conversationId !== null ? { conversationId } : {}),
              ...(body.previous_response_id != null ? { previousResponseId: body.previous_response_id } : {}),
              upstreamStream: true,
              requestId: c.var.requestId,
              signal: c.var.deadline,
            },
            id,
          ).catch((err: unknown) => {
            // OpenAI's answer to a second response on a busy conversation.
            if (err instanceof ConversationBusyError) {
              throw new InvalidRequestError(
                "Another response is in progress on this conversation; retry once it has ended (or cancel it).",
                "conversation",
                "conversation_locked",
              );
            }
            throw err;
          });
          return { result: { kind: "response", responseId: stored.response.id }, value: stored };
        },
        respond: (stored) => answerStored(c, stored, { stream, background }),
        replay: async (result) => {
          if (result.kind !== "response") throw new Error(`an idempotency record of kind ${result.kind} on a response`);
          return answerStored(c, await findResponse(deps, tenantId, result.responseId), { stream, background });
        },
      })) as never;
    })
    .openapi(retrieve, async (c) => {
      const { response_id: id } = c.req.valid("param");
      const query = c.req.valid("query");
      const include = includeOf(query);
      const found = await findResponse(deps, c.var.tenantId, id);
      if (query.stream !== "true") return c.json(await storedResponseObject(deps, found, include.length ? include : undefined), 200);
      const base = responseBaseSchema.parse(found.response.request);
      const follow = await followReply(c.var.tenantId, found);
      return responseEventStream(c, deps, follow, new ResponseEventTranslator(base, found.response.replyId), query.starting_after ?? -1) as never;
    })
    .openapi(cancel, async (c) => {
      const found = await cancelResponse(deps, c.var.tenantId, c.req.valid("param").response_id);
      return c.json(await storedResponseObject(deps, found), 200);
    })
    .openapi(remove, async (c) => {
      const id = c.req.valid("param").response_id;
      await deleteResponse(deps, c.var.tenantId, id);
      return c.json({ id, object: "response.deleted" as const, deleted: true as const }, 200);
    })
    .openapi(inputItems, async (c) => {
      const { limit, order, after, ...query } = c.req.valid("query");
      const include = includeOf(query);
      const found = await findResponse(deps, c.var.tenantId, c.req.valid("param").response_id);
      const all = (await responseInput(deps, found)).flatMap((row) => messageToItems(row, { include }));
      if (order === "desc") all.reverse();
      let start = 0;
      if (after !== undefined) {
        const at = all.findIndex((i) => i.id === after);
        // A 404 as documented above, and as the conversation's items answer an unknown `after`.
        if (at < 0) throw new NotFoundError("item", after, "after");
        start = at + 1;
      }
      const data = all.slice(start, start + limit);
      return c.json(
        { object: "list" as const, data, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null, has_more: start + limit < all.length },
        200,
      );
    });
}

/** An input message in the form of a stored one, as history.ts sends it. */
const storedForm = (m: GivenMessage) => ({
  role: m.role,
  status: "completed" as const,
  content: m.content,
  parts: m.parts ?? null,
  name: m.name ?? null,
  toolCalls: m.tool_calls ?? null,
  toolCallId: m.tool_call_id ?? null,
  reasoning: m.reasoning ?? null,
});
