import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import { and, asc, eq, inArray } from "drizzle-orm";
import { messages, type MessageRow } from "../../db/schema.ts";
import {
  ConversationItemNotFoundError,
  deleteConversationItem,
  getConversationItem,
  listConversationItems,
  type ItemRef,
} from "../../domain/conversation-items.ts";
import { InvalidRequestError } from "../../domain/errors.ts";
import type { GivenMessage } from "../../domain/message-rows.ts";
import { conversationSchema, toConversationResource } from "../../domain/resources.ts";
import { appendTurn, type TurnDeps } from "../../domain/turns.ts";
import type { AppEnv } from "../env.ts";
import { idempotently, type IdempotencyDeps } from "../idempotency.ts";
import {
  inputItemSchema,
  inputItemsToMessages,
  itemListSchema,
  itemSchema,
  messageToItems,
  parseItemId,
  referencedItemIds,
  type InputItem,
  type Item,
} from "../responses/items.ts";
import { validationHook } from "../validation.ts";
import * as ex from "./examples.ts";
import { conversationIdParam, errorResponse, includeOf, includeQuery, jsonBody, jsonResponse } from "./schemas.ts";

/**
 * OpenAI's Conversations API items on Parley's conversations: each stored
 * message is shown as the items it stands for (src/http/responses/items.ts),
 * and items given are stored as messages, so both APIs see one history.
 */

/** OpenAI's limit on the items of one request (create, add). */
export const MAX_ITEMS_PER_REQUEST = 20;

const tags = ["Conversation items"];
const itemIdParam = z.string().openapi({ param: { name: "item_id", in: "path" }, example: "fc_01jf3t8vvaf8s9k0d7k6x1s2y3_0" });
const conversationParams = z.object({ conversation_id: conversationIdParam });
const itemParams = z.object({ conversation_id: conversationIdParam, item_id: itemIdParam });

/** The items of a request (create, add): 1 to 20 input items. */
export const givenItemsSchema = (min: number) =>
  z
    .array(inputItemSchema)
    .min(min)
    .max(MAX_ITEMS_PER_REQUEST)
    .openapi({ description: `Input items, oldest first (up to ${MAX_ITEMS_PER_REQUEST}); stored as completed messages.` });

const addItemsSchema = z.object({ items: givenItemsSchema(1) }).strict().openapi("AddConversationItems");


const add = createRoute({
  method: "post",
  path: "/{conversation_id}/items",
  operationId: "createConversationItems",
  tags,
  summary: "Add items to a conversation (stored as completed messages; no reply)",
  request: { params: conversationParams, query: z.object(includeQuery), body: jsonBody(addItemsSchema, ex.addItemsExample) },
  responses: {
    200: jsonResponse(itemListSchema, "The items added, as stored.", ex.addedItemsExample),
    400: errorResponse("Invalid items, or a function_call_output answering no function_call."),
    404: errorResponse("No such conversation."),
    409: errorResponse("A reply is in flight in this conversation (`conversation_busy`)."),
  },
});

const list = createRoute({
  method: "get",
  path: "/{conversation_id}/items",
  operationId: "listConversationItems",
  tags,
  summary: "The conversation's items, newest first by default",
  description:
    "Items are views of the stored messages: an assistant message is its reasoning, its text and one function_call " +
    "per tool call. `after` may be any item id.",
  request: {
    params: conversationParams,
    query: z.object({
      limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ description: "1 to 100." }),
      order: z.enum(["asc", "desc"]).default("desc"),
      after: z.string().min(1).optional().openapi({ description: "An item id: the page starts after it, in `order`." }),
      ...includeQuery,
    }),
  },
  responses: {
    200: jsonResponse(itemListSchema, "A page of items.", ex.itemListExample),
    400: errorResponse("Invalid paging."),
    404: errorResponse("No such conversation, or no item `after`."),
  },
});

const get = createRoute({
  method: "get",
  path: "/{conversation_id}/items/{item_id}",
  operationId: "getConversationItem",
  tags,
  summary: "One item; a reply in flight shows its content so far",
  request: { params: itemParams, query: z.object(includeQuery) },
  responses: {
    200: jsonResponse(itemSchema, "The item.", ex.itemExample),
    404: errorResponse("No such conversation or item."),
  },
});

const remove = createRoute({
  method: "delete",
  path: "/{conversation_id}/items/{item_id}",
  operationId: "deleteConversationItem",
  tags,
  summary: "Delete an item; answers the conversation",
  description:
    "A user, system, developer or tool message is deleted whole; of an assistant message, the reasoning, text or one " +
    "function_call goes (a message left with no text and no calls is deleted). Later turns no longer send it. " +
    "Seqs are not renumbered. Of a reply in flight nothing can be deleted (400), nor anything while one is in flight (409).",
  request: { params: itemParams },
  responses: {
    200: jsonResponse(conversationSchema, "The conversation.", { ...ex.conversationExample, message_count: 1 }),
    400: errorResponse("The item is part of a reply in flight (`reply_in_flight`)."),
    404: errorResponse("No such conversation or item."),
    409: errorResponse("A reply is in flight in this conversation (`conversation_busy`)."),
  },
});

/** An item id as the domain takes it; one that is not of our shape is a 404 like any unknown id. */
function itemRef(itemId: string, param: string | null = null): ItemRef {
  const parsed = parseItemId(itemId);
  if (!parsed) throw new ConversationItemNotFoundError(itemId, param);
  return { itemId, ...parsed };
}

/**
 * Input items as the messages they are stored as. An item_reference names an item of some other stored
 * input: refused here, where the items themselves are the history being written.
 */
export function messagesOfItems(items: readonly InputItem[], field: string): GivenMessage[] {
  const [referenced] = referencedItemIds(items);
  if (referenced !== undefined) {
    const index = items.findIndex((item) => item.type === "item_reference");
    throw new InvalidRequestError(
      `item_reference ('${referenced}') cannot be used here: send the item itself.`,
      `${field}.${index}`,
      "item_reference_not_supported",
    );
  }
  return inputItemsToMessages(items, { references: new Map() });
}

/**
 * A tool result that answers no call is reported by the domain on the message it became
 * (`messages.N.tool_call_id`, or `tool_call_id` for one message); the caller sent items, so name the
 * function_call_output item instead.
 */
export function blameItem(err: unknown, given: GivenMessage[], items: readonly InputItem[], field: string): unknown {
  if (!(err instanceof InvalidRequestError) || !err.param?.endsWith("tool_call_id")) return err;
  const index = Number(/^messages\.(\d+)\./.exec(err.param)?.[1] ?? 0);
  const callId = given[index]?.tool_call_id;
  const at = items.findIndex((item) => item.type === "function_call_output" && item.call_id === callId);
  if (callId === undefined || at < 0) return err;
  return new InvalidRequestError(
    `${field}.${at}: call_id '${callId}' answers no function_call before it (in these items, or since the conversation's last user message).`,
    `${field}.${at}.call_id`,
    err.code,
  );
}

const listOfItems = (data: Item[]) => ({
  object: "list" as const,
  data,
  first_id: data[0]?.id ?? null,
  last_id: data.at(-1)?.id ?? null,
  has_more: false,
});

export function conversationItemRoutes(deps: TurnDeps & IdempotencyDeps) {
  /** The rows a request stored, by id, oldest first (a repeat's answer: rows deleted since are left out). */
  const storedRows = async (tenantId: string, conversationId: string, ids: string[]): Promise<MessageRow[]> =>
    ids.length === 0
      ? []
      : deps.db
          .select()
          .from(messages)
          .where(and(inArray(messages.id, ids), eq(messages.conversationId, conversationId), eq(messages.tenantId, tenantId)))
          .orderBy(asc(messages.seq));

  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook })
    .openapi(add, async (c) => {
      const conversationId = c.req.valid("param").conversation_id;
      const include = includeOf(c.req.valid("query"));
      const body = c.req.valid("json");
      const itemsOf = (rows: MessageRow[]) => listOfItems(rows.flatMap((row) => messageToItems(row, { include })));
      return (await idempotently(c, deps, body, {
        perform: async () => {
          const given = messagesOfItems(body.items, "items");
          const turn = await appendTurn(deps, c.var.tenantId, conversationId, {
            messages: given,
            reply: false,
            param: "items",
            requestId: c.var.requestId,
          }).catch((err: unknown) => {
            throw blameItem(err, given, body.items, "items");
          });
          const ids = turn.messages.map((m) => m.id);
          return { result: { kind: "turn", conversationId, messageIds: ids, replyId: null }, value: turn.messages };
        },
        respond: (rows) => c.json(itemsOf(rows), 200),
        replay: async (result) =>
          c.json(itemsOf(result.kind === "turn" ? await storedRows(c.var.tenantId, result.conversationId, result.messageIds) : []), 200),
      })) as never;
    })
    .openapi(list, async (c) => {
      const conversationId = c.req.valid("param").conversation_id;
      const query = c.req.valid("query");
      const include = includeOf(query);
      const page = await listConversationItems(
        deps,
        c.var.tenantId,
        conversationId,
        { limit: query.limit, order: query.order, after: query.after === undefined ? undefined : itemRef(query.after, "after") },
        (row) => messageToItems(row, { include }),
      );
      return c.json(page, 200);
    })
    .openapi(get, async (c) => {
      const { conversation_id: conversationId, item_id: itemId } = c.req.valid("param");
      const include = includeOf(c.req.valid("query"));
      const item = await getConversationItem(deps, c.var.tenantId, conversationId, itemRef(itemId), (row) =>
        messageToItems(row, { include }),
      );
      return c.json(item, 200);
    })
    .openapi(remove, async (c) => {
      const { conversation_id: conversationId, item_id: itemId } = c.req.valid("param");
      const conversation = await deleteConversationItem(deps, c.var.tenantId, conversationId, itemRef(itemId), (row) => messageToItems(row));
      return c.json(toConversationResource(conversation), 200);
    });
}
