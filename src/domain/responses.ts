import { and, asc, eq, gte, inArray, lt } from "drizzle-orm";
import { conversations, messages, responses, type ContextStrategy, type MessageRow, type ResponseRow } from "../db/schema.ts";
import type { ChatMessage } from "../providers/types.ts";
import { ConversationBusyError, HistoryMovedOnError, InvalidRequestError, NotFoundError } from "./errors.ts";
import { forkConversation } from "./forks.ts";
import { buildHistory } from "./history.ts";
import { looksLikeId, newConversationId, newResponseId } from "./ids.ts";
import { givenMessageTokens, type GivenMessage } from "./message-rows.ts";
import { cancelReply, type ReplyControlDeps } from "./reply-control.ts";
import { isInFlight } from "./replies.ts";
import { appendTurn, type TurnDeps } from "./turns.ts";

/**
 * The Responses API's state, on Parley's turns: a response is a turn of a
 * conversation. With `conversation` it is the caller's; otherwise a hidden
 * one holds the `previous_response_id` chain: a response continues its
 * previous one's conversation when that response is still its last turn, and
 * branches (a hidden fork up to it) when the chain has moved on or the
 * previous response was a turn of the caller's conversation. The turn
 * lifecycle (queue, generate, store, relay, cancel, resume) is the one every
 * turn has; this file only decides where the turn goes and keeps its record.
 */

export interface NewResponse {
  model: string;
  /** The input items as messages. */
  messages: GivenMessage[];
  /** The chat-completions params, with the turn's own `instructions` and `truncation` (turn-settings.ts). */
  params: Record<string, unknown>;
  /** What the response object echoes (ResponseBase), stored as given. */
  request: Record<string, unknown>;
  conversationId?: string;
  previousResponseId?: string;
  upstreamStream: boolean;
  requestId?: string;
  signal?: AbortSignal;
}

export interface StoredResponse {
  response: ResponseRow;
  reply: MessageRow | null;
}

/** OpenAI's default is `truncation: disabled`: a chain whose history outgrows the window is refused, not cut. */
const chainStrategy = (params: Record<string, unknown>): ContextStrategy => (params.truncation === "auto" ? "auto" : "strict");

/**
 * A chain's turn fits its history as its own request says (OpenAI's default `disabled` when left out, as its
 * response echoes), never as an earlier response of the chain asked.
 */
const ownTruncation = (params: Record<string, unknown>): Record<string, unknown> =>
  params.truncation === undefined ? { ...params, truncation: "disabled" } : params;

/**
 * Stores the response's input and queued reply as a turn, with its record, in one transaction; the
 * reply is then generated like any other. Where the turn goes: see the file's comment.
 */
export async function createResponse(deps: TurnDeps, tenantId: string, r: NewResponse, id = newResponseId()): Promise<StoredResponse & { input: MessageRow[] }> {
  if (r.conversationId !== undefined && r.previousResponseId !== undefined) {
    throw new InvalidRequestError("Send either `conversation` or `previous_response_id`, not both.", "previous_response_id");
  }
  const turnInto = async (conversationId: string, given: boolean, expectLastSeq?: number) => {
    let record: ResponseRow | undefined;
    const turn = await appendTurn(deps, tenantId, conversationId, {
      messages: r.messages,
      reply: true,
      model: r.model,
      params: given ? r.params : ownTruncation(r.params),
      upstreamStream: r.upstreamStream,
      requestId: r.requestId,
      signal: r.signal,
      param: "input",
      ...(expectLastSeq === undefined ? {} : { expectLastSeq }),
      onStored: async (tx, stored) => {
        if (!stored.reply) throw new Error("a response's turn stored no reply");
        [record] = await tx
          .insert(responses)
          .values({
            id,
            tenantId,
            conversationId,
            replyId: stored.reply.id,
            inputFromSeq: stored.messages[0]?.seq ?? stored.reply.seq,
            previousResponseId: r.previousResponseId ?? null,
            conversationGiven: given,
            // The truncation the turn was fitted by, as the response echoes it: a conversation's own strategy when
            // the request named none (`strict` is `disabled`; `auto` and `summarize` cut what does not fit).
            request: { ...r.request, truncation: stored.settings.contextStrategy === "strict" ? "disabled" : "auto" },
            createdAt: stored.reply.createdAt,
          })
          .returning();
      },
    });
    if (!record) throw new Error("a response's turn stored no record");
    return { response: record as ResponseRow, reply: turn.reply, input: turn.messages };
  };

  if (r.conversationId !== undefined) {
    const conversationId = r.conversationId;
    return turnInto(conversationId, true).catch((err: unknown) => {
      // The turn says which conversation is missing; the caller is told which field named it.
      const named = new NotFoundError("conversation", conversationId, "conversation");
      throw err instanceof NotFoundError && err.param === null && err.message === named.message ? named : err;
    });
  }

  if (r.previousResponseId !== undefined) {
    const previous = await findResponse(deps, tenantId, r.previousResponseId, "previous_response_id");
    if (!previous.reply) throw new NotFoundError("response", r.previousResponseId, "previous_response_id");
    if (isInFlight(previous.reply.status)) {
      throw new InvalidRequestError(
        `Previous response '${r.previousResponseId}' is still in progress: wait for it to end (or cancel it) before continuing from it.`,
        "previous_response_id",
        "previous_response_in_progress",
      );
    }
    // A chain's own conversation is continued in place while the previous response is its last turn.
    if (!previous.response.conversationGiven) {
      try {
        return await turnInto(previous.response.conversationId, false, previous.reply.seq);
      } catch (err) {
        if (!(err instanceof HistoryMovedOnError) && !(err instanceof ConversationBusyError)) throw err;
      }
    }
    const fork = await forkConversation(
      deps,
      tenantId,
      previous.response.conversationId,
      { message_id: previous.reply.id },
      { hidden: true },
    );
    return turnInto(fork.id, false);
  }

  const [chain] = await deps.db
    .insert(conversations)
    .values({ id: newConversationId(), tenantId, model: r.model, hidden: true, contextStrategy: chainStrategy(r.params) })
    .returning({ id: conversations.id });
  if (!chain) throw new Error("insert returned no conversation");
  try {
    return await turnInto(chain.id, false);
  } catch (err) {
    // Nothing else knows this conversation: a turn it could not take leaves nothing behind.
    await deps.db.delete(conversations).where(eq(conversations.id, chain.id)).catch(() => {});
    throw err;
  }
}

/** A stored response and its reply (null when the reply was deleted as a conversation item). */
export async function findResponse(
  deps: Pick<TurnDeps, "db">,
  tenantId: string,
  id: string,
  param: string | null = null,
): Promise<StoredResponse> {
  if (!looksLikeId("resp", id)) throw new NotFoundError("response", id, param);
  const [found] = await deps.db
    .select({ response: responses, reply: messages })
    .from(responses)
    .leftJoin(messages, eq(messages.id, responses.replyId))
    .where(and(eq(responses.id, id), eq(responses.tenantId, tenantId)));
  if (!found) throw new NotFoundError("response", id, param);
  return found;
}

/** Stops a response in flight (its partial output kept), as cancel stops any reply; an ended one is returned as it is. */
export async function cancelResponse(deps: ReplyControlDeps, tenantId: string, id: string): Promise<StoredResponse> {
  const found = await findResponse(deps, tenantId, id);
  if (!found.reply || !isInFlight(found.reply.status)) return found;
  const reply = await cancelReply(deps, tenantId, found.response.conversationId, found.reply.id);
  return { ...found, reply };
}

/**
 * Deletes a response's record (a response in flight is stopped first). Its items stay in its
 * conversation: the caller's, or the chain that later responses may continue.
 */
export async function deleteResponse(deps: ReplyControlDeps, tenantId: string, id: string): Promise<void> {
  await cancelResponse(deps, tenantId, id);
  await deps.db.delete(responses).where(and(eq(responses.id, id), eq(responses.tenantId, tenantId)));
}

/** The messages a response was given: its turn's, before its reply, in order. */
export async function responseInput(deps: Pick<TurnDeps, "db">, found: StoredResponse): Promise<MessageRow[]> {
  const end = found.reply?.seq;
  return deps.db
    .select()
    .from(messages)
    .where(
      and(
        eq(messages.conversationId, found.response.conversationId),
        gte(messages.seq, found.response.inputFromSeq),
        end === undefined ? undefined : lt(messages.seq, end),
      ),
    )
    .orderBy(asc(messages.seq));
}

/**
 * `store: false` with a `previous_response_id`: the history the previous response's next turn would be
 * sent (fitted as a turn of its conversation is, by `truncation`), to which the new input is added;
 * nothing is stored.
 */
export async function historyAfterResponse(
  deps: Pick<TurnDeps, "db" | "contextWindows">,
  tenantId: string,
  previousResponseId: string,
  model: string,
  params: Record<string, unknown>,
  input: GivenMessage[],
): Promise<ChatMessage[]> {
  const previous = await findResponse(deps, tenantId, previousResponseId, "previous_response_id");
  if (!previous.reply) throw new NotFoundError("response", previousResponseId, "previous_response_id");
  if (isInFlight(previous.reply.status)) {
    throw new InvalidRequestError(`Previous response '${previousResponseId}' is still in progress.`, "previous_response_id", "previous_response_in_progress");
  }
  const [conversation] = await deps.db.select().from(conversations).where(eq(conversations.id, previous.response.conversationId));
  if (!conversation) throw new NotFoundError("response", previousResponseId, "previous_response_id");
  const built = await buildHistory(deps, conversation, { seq: previous.reply.seq + 1, params: ownTruncation(params) }, model, input.reduce((n, m) => n + givenMessageTokens(m), 0));
  return built.messages;
}

/** The tenant's messages with these ids (an input's item references name them), in no particular order. */
export async function messagesByIds(deps: Pick<TurnDeps, "db">, tenantId: string, ids: string[]): Promise<MessageRow[]> {
  const wanted = [...new Set(ids.filter((id) => looksLikeId("msg", id)))];
  if (wanted.length === 0) return [];
  return deps.db
    .select()
    .from(messages)
    .where(and(inArray(messages.id, wanted), eq(messages.tenantId, tenantId)));
}
