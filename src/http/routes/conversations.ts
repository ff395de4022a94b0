import type { Context } from "hono";
import type { ConversationRow } from "../../db/schema.ts";
import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import {
  createConversation,
  conversationListQuerySchema,
  createConversationSchema,
  deleteConversation,
  getConversation,
  listConversations,
  updateConversation,
  updateConversationSchema,
  type ConversationDeletionDeps,
  type ConversationDeps,
} from "../../domain/conversations.ts";
import { forkConversation, forkConversationSchema } from "../../domain/forks.ts";
import { conversationSchema, listOf, toConversationResource } from "../../domain/resources.ts";
import type { AppEnv } from "../env.ts";
import { idempotently, type IdempotencyDeps } from "../idempotency.ts";
import { validationHook } from "../validation.ts";
import { blameItem, givenItemsSchema, messagesOfItems } from "./conversation-items.ts";
import * as ex from "./examples.ts";
import { conversationIdParam, errorResponse, jsonBody, jsonResponse } from "./schemas.ts";

const tags = ["Conversations"];

const params = z.object({ conversation_id: conversationIdParam });

/** Parley's create body, or OpenAI's Conversations API one: `items` instead of `messages`. */
const createBodySchema = z
  .object({ ...createConversationSchema.shape, items: givenItemsSchema(0).optional() })
  .strict()
  .superRefine((body, ctx) => {
    if (body.items !== undefined && body.messages !== undefined) {
      ctx.addIssue({ code: "custom", path: ["items"], message: "Give `items` or `messages`, not both." });
    }
  })
  .openapi("CreateConversation");

const create = createRoute({
  method: "post",
  path: "/",
  operationId: "createConversation",
  tags,
  summary: "Create a conversation",
  request: { body: jsonBody(createBodySchema, ex.createConversationExample) },
  responses: {
    201: jsonResponse(conversationSchema, "The new conversation.", { ...ex.conversationExample, message_count: 0 }),
    400: errorResponse("Invalid input."),
    404: errorResponse("The model is not served."),
  },
});

const fork = createRoute({
  method: "post",
  path: "/{conversation_id}/fork",
  operationId: "forkConversation",
  tags,
  summary: "Fork a conversation at a message: a new conversation with a copy of the history up to it",
  request: { params, body: jsonBody(forkConversationSchema, ex.forkConversationExample) },
  responses: {
    201: jsonResponse(conversationSchema, "The new conversation.", { ...ex.conversationExample, id: "conv_01m8tbh5n2f69sg2r5a6sx8d4a", message_count: 1 }),
    400: errorResponse("Invalid input, or the message is a reply in flight."),
    404: errorResponse("No such conversation or message."),
  },
});

const list = createRoute({
  method: "get",
  path: "/",
  operationId: "listConversations",
  tags,
  summary: "List conversations, newest first; `q` searches their titles and metadata",
  request: { query: conversationListQuerySchema },
  responses: {
    200: jsonResponse(listOf(conversationSchema, "ConversationList"), "A page of conversations (of those matching `q`).", ex.conversationListExample),
    400: errorResponse("Invalid paging, or a `q` over 200 characters."),
  },
});

const get = createRoute({
  method: "get",
  path: "/{conversation_id}",
  operationId: "getConversation",
  tags,
  summary: "Get a conversation",
  request: { params },
  responses: {
    200: jsonResponse(conversationSchema, "The conversation.", ex.conversationExample),
    404: errorResponse("No such conversation."),
  },
});

const update = createRoute({
  method: "patch",
  path: "/{conversation_id}",
  operationId: "patchConversation",
  tags,
  summary: "Change a conversation's title, system prompt, model, params or metadata",
  request: { params, body: jsonBody(updateConversationSchema, ex.updateConversationExample) },
  responses: {
    200: jsonResponse(conversationSchema, "The changed conversation.", {
      ...ex.conversationExample,
      ...ex.updateConversationExample,
      updated_at: ex.conversationExample.updated_at + 60,
    }),
    400: errorResponse("Invalid input."),
    404: errorResponse("No such conversation, or the model is not served."),
  },
});

// OpenAI's Conversations API updates with a POST (`{metadata}`); the same body and answer as the PATCH.
const updateByPost = createRoute({
  ...update,
  method: "post",
  operationId: "updateConversation",
  summary: "Change a conversation (as PATCH does; the Conversations API's update)",
});

const remove = createRoute({
  method: "delete",
  path: "/{conversation_id}",
  operationId: "deleteConversation",
  tags,
  summary: "Delete a conversation and its messages",
  description:
    "A reply in flight is stopped as cancel stops it: its model call is aborted and its followers get " +
    "`message.cancelled` (the reply as it was) and `done`; a waiting append answers 201 with that reply.",
  request: { params },
  responses: {
    200: jsonResponse(
      z.object({ id: z.string(), object: z.literal("conversation.deleted"), deleted: z.literal(true) }).openapi("ConversationDeleted"),
      "Deleted.",
      ex.conversationDeletedExample,
    ),
    404: errorResponse("No such conversation."),
  },
});

export function conversationRoutes(deps: ConversationDeps & ConversationDeletionDeps & IdempotencyDeps) {
  /** 201 with the conversation `make` stores, made once per Idempotency-Key. */
  const created = async (c: Context<AppEnv>, body: unknown, make: () => Promise<ConversationRow>) =>
    (await idempotently(c, deps, body, {
      perform: async () => {
        const conversation = await make();
        const response = toConversationResource(conversation);
        return { result: { kind: "conversation", conversationId: conversation.id, response }, value: response };
      },
      respond: (response) => c.json(response, 201),
      replay: (result) => c.json(result.kind === "conversation" ? result.response : null, 201),
    })) as never;

  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(create, async (c) => {
      const body = c.req.valid("json");
      const { items, ...input } = body;
      if (items === undefined) return created(c, body, async () => (await createConversation(deps, c.var.tenantId, input)).conversation);
      return created(c, body, async () => {
        const given = messagesOfItems(items, "items");
        const made = await createConversation(deps, c.var.tenantId, input, given).catch((err: unknown) => {
          throw blameItem(err, given, items, "items");
        });
        return made.conversation;
      });
    })
    .openapi(fork, async (c) => {
      const body = c.req.valid("json");
      const conversationId = c.req.valid("param").conversation_id;
      return created(c, body, () => forkConversation(deps, c.var.tenantId, conversationId, body));
    })
    .openapi(list, async (c) => {
      const page = await listConversations(deps, c.var.tenantId, c.req.valid("query"));
      return c.json({ ...page, data: page.data.map(toConversationResource) }, 200);
    })
    .openapi(get, async (c) => {
      const row = await getConversation(deps, c.var.tenantId, c.req.valid("param").conversation_id);
      return c.json(toConversationResource(row), 200);
    })
    .openapi(update, async (c) => {
      const id = c.req.valid("param").conversation_id;
      const row = await updateConversation(deps, c.var.tenantId, id, c.req.valid("json"));
      return c.json(toConversationResource(row), 200);
    })
    .openapi(updateByPost, async (c) => {
      const id = c.req.valid("param").conversation_id;
      const row = await updateConversation(deps, c.var.tenantId, id, c.req.valid("json"));
      return c.json(toConversationResource(row), 200);
    })
    .openapi(remove, async (c) => {
      const id = c.req.valid("param").conversation_id;
      await deleteConversation(deps, c.var.tenantId, id);
      return c.json({ id, object: "conversation.deleted" as const, deleted: true as const }, 200);
    });
}
