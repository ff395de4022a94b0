import { z } from "@hono/zod-openapi";
import { and, desc, eq, lt, notExists, sql, type SQL } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { jsonParam, prepared, preparedByKey } from "../db/statements.ts";
import { conversations, messages, type ConversationRow, type MessageRow } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import type { ModelJobQueue } from "../queue/completions.ts";
import type { ReplySlots } from "./reply-slots.ts";
import type { ReplyEventLog } from "../streams/reply-events.ts";
import { ConversationBusyError, DependencyUnavailableError, HistoryMovedOnError, InvalidRequestError, ModelNotFoundError, NotFoundError } from "./errors.ts";
import { looksLikeId, newMessageId } from "./ids.ts";
import type { ContextWindows } from "../context/context-windows.ts";
import { assertTurnFits, turnBudget } from "../context/turn-budget.ts";
import { checkChatMessage, chatMessageShape } from "./chat-message.ts";
import { completedMessageRows, givenMessage, toolResultsWithoutCall, type GivenMessage } from "./message-rows.ts";
import { restoreTurnToHistory } from "./failed-turns.ts";
import { finishReply, replyInFlightSql } from "./replies.ts";
import { dbSpan } from "../observability/spans.ts";
import { turnSettings, type TurnSettings } from "./turn-settings.ts";
import { metadataSchema, paramsSchema, toMessageResource } from "./resources.ts";

export type Transaction = Parameters<Parameters<Database["transaction"]>[0]>[0];

export interface TurnDeps {
  db: Database;
  models: ModelRegistry;
  replyEvents: ReplyEventLog;
  jobQueue: ModelJobQueue;
  replySlots: ReplySlots;
  contextWindows: ContextWindows;
}

export const appendMessageSchema = z
  .object({
    ...chatMessageShape,
    role: chatMessageShape.role.default("user"),
    content: chatMessageShape.content.openapi({
      description:
        "Text, or content parts (`text`, `image_url` with an https: or data:image/…;base64, URL). " +
        "Null (or left out) only on an assistant message with `tool_calls`.",
      example: "What should I see in Lisbon?",
    }),
    metadata: metadataSchema.optional(),
    reply: z.boolean().optional().openapi({
      description: "Generate the assistant's reply (default for `role: user` and `role: tool`; only allowed for them).",
    }),
    params: paramsSchema
      .optional()
      .openapi({ description: "Sampling fields for this reply only, merged over the conversation's `params`." }),
    stream: z.boolean().default(false).openapi({ description: "Answer with the reply's events as SSE." }),
    wait: z
      .boolean()
      .default(true)
      .openapi({ description: "Non-streaming only: wait for the reply (201), or answer at once with it queued (202)." }),
  })
  .strict()
  .superRefine(checkChatMessage)
  .openapi("AppendMessage");
export type AppendMessageInput = z.infer<typeof appendMessageSchema>;

export interface AppendedTurn {
  message: MessageRow;
  reply: MessageRow | null;
}

/** Messages to append together, and whether (and how) to generate a reply after them. */
export interface NewTurn {
  messages: GivenMessage[];
  reply: boolean;
  /** The reply's model; the conversation's when absent. */
  model?: string;
  /** Sampling fields for this reply, over the conversation's params. */
  params?: Record<string, unknown> | null;
  /**
   * Regenerate: the id of the conversation's last message, an ended reply,
   * which the new reply replaces (same seq; the old one is deleted). The turn
   * then has no messages of its own.
   */
  replaces?: string;
  /** The request field a turn too large for the model's window is blamed on (`content` unless told). */
  param?: string;
  /** Ask the provider with streaming on (default) or for one whole answer. */
  upstreamStream?: boolean;
  /** The request that asked for the turn: carried into the job, so the worker's log lines name it. */
  requestId?: string;
  /** Aborted once the request has been answered without the turn (its deadline passed): then nothing is stored. */
  signal?: AbortSignal;
  /**
   * The turn follows the message with this seq, which must still be the conversation's last
   * (else HistoryMovedOnError): a `previous_response_id` continues its chain only from its end.
   */
  expectLastSeq?: number;
  /** Stores what belongs with the turn (a response's record) in the turn's own transaction, so both or neither are stored. */
  onStored?: (tx: Transaction, stored: { messages: MessageRow[]; reply: MessageRow | null; settings: TurnSettings }) => Promise<void>;
}

/** One message through the messages API: the checks of its flags, then a turn. */
export async function appendMessage(
  deps: TurnDeps,
  tenantId: string,
  conversationId: string,
  input: AppendMessageInput,
  requestId?: string,
  signal?: AbortSignal,
): Promise<AppendedTurn> {
  // A tool result is answered like a user's message: the model goes on from it.
  const answerable = input.role === "user" || input.role === "tool";
  if (input.reply === true && !answerable) {
    throw new InvalidRequestError("Only a `user` or `tool` message can ask for a reply.", "reply");
  }
  const wantsReply = answerable && input.reply !== false;
  if (input.stream && !wantsReply) {
    throw new InvalidRequestError("`stream: true` streams a reply; this message asks for none.", "stream");
  }
  const turn = await appendTurn(deps, tenantId, conversationId, {
    messages: [givenMessage(input, input.metadata)],
    reply: wantsReply,
    params: input.params ?? null,
    requestId,
    signal,
  });
  const [message] = turn.messages;
  if (!message) throw new Error("a turn stored no message");
  return { message, reply: turn.reply };
}

/**
 * Stores messages and, when asked, a `queued` reply, with the next seqs; then
 * announces the reply on its event stream and enqueues its job. Any append
 * while a reply is in flight is refused; seqs never repeat.
 *
 * Usually two round trips to Postgres: one read of what the turn is checked
 * against, and one statement that bumps the conversation (only if its row is
 * still as read and nothing is in flight) and inserts the rows, atomic on its
 * own (plus BEGIN/COMMIT around it when `onStored` has more to store). A turn
 * that meets a concurrent change, and a regenerated one, take the locked path
 * instead (appendTurnLocked), which waits its turn on the conversation's row.
 */
export async function appendTurn(
  deps: TurnDeps,
  tenantId: string,
  conversationId: string,
  turn: NewTurn,
): Promise<{ messages: MessageRow[]; reply: MessageRow | null }> {
  checkTurnRequest(deps, conversationId, turn);
  if (turn.replaces !== undefined) return appendTurnLocked(deps, tenantId, conversationId, turn);

  // The reply's slot is asked for while the conversation is read (one round trip less before the turn is
  // stored), and given back when the turn is refused: a busy or missing conversation answers 409/404 before
  // a spent slot budget answers 429, as if the slot had been asked for after the read.
  const replyId = turn.reply ? newMessageId() : null;
  const slot = turnSlot(deps, tenantId);
  const [read, taken] = await Promise.allSettled([
    dbSpan("read turn state", "SELECT", "conversations", () => readTurnState(deps.db, tenantId, conversationId)),
    replyId ? slot.take(replyId) : null,
  ]);
  let stored: { messages: MessageRow[]; reply: MessageRow | null } | null;
  try {
    if (read.status === "rejected") throw read.reason;
    const state = read.value;
    if (!state) throw new NotFoundError("conversation", conversationId);
    if (state.busyReplyId !== null) throw new ConversationBusyError(state.busyReplyId);
    if (turn.expectLastSeq !== undefined && state.lastSeq !== turn.expectLastSeq) throw new HistoryMovedOnError();
    if (taken.status === "rejected") throw taken.reason;
    await assertToolResultsAnswerCalls(deps.db, conversationId, turn.messages);
    const planned = planTurnRows(deps, tenantId, conversationId, turn, {
      settings: state,
      firstSeq: state.lastSeq + 1,
      historyTokensBefore: state.historyTokensBefore,
      replyId,
    });
    // The waits above may have outlasted the request: its caller has been told 503, so nothing is stored.
    turn.signal?.throwIfAborted();
    stored = await dbSpan("append turn", "INSERT", "messages", () => storeTurnRows(deps, tenantId, conversationId, turn, state.version, planned));
  } catch (err) {
    await slot.giveBack();
    throw err;
  }
  if (!stored) {
    await slot.giveBack();
    return appendTurnLocked(deps, tenantId, conversationId, turn);
  }
  await startStoredReply(deps, tenantId, stored, turn, slot);
  return stored;
}

/**
 * The fast path's write: the turn's rows in one statement (in a transaction with `onStored` when there is
 * one). Null when the locked path must decide instead: the row changed since it was read (another turn, a
 * deleted item, new settings), another transaction holds it, or a racing reply took the one-in-flight index.
 */
async function storeTurnRows(
  deps: TurnDeps,
  tenantId: string,
  conversationId: string,
  turn: NewTurn,
  version: string,
  planned: ReturnType<typeof planTurnRows>,
): Promise<{ messages: MessageRow[]; reply: MessageRow | null } | null> {
  const write = async (db: Database | Transaction) => {
    const rows = await insertTurnRows(db, tenantId, conversationId, version, planned.rows);
    rows.sort((a, b) => a.seq - b.seq);
    const reply = planned.replyId ? (rows.pop() ?? null) : null;
    return { messages: rows, reply };
  };
  const onStored = turn.onStored;
  try {
    return onStored
      ? await deps.db.transaction(async (tx) => {
          const done = await write(tx);
          await onStored(tx, { ...done, settings: planned.settings });
          return done;
        })
      : await write(deps.db);
  } catch (err) {
    if (isUniqueViolation(err, "messages_one_reply_in_flight_idx") || isNotNullViolation(err, "seq") || isLockNotAvailable(err)) return null;
    throw err;
  }
}

/**
 * A turn's hold on its tenant's reply slot: taken once the conversation is known to be free (a busy one
 * answers 409, not 429) and before anything is stored (a refused turn stores nothing); given back when
 * the turn stores nothing or its reply cannot be started.
 */
function turnSlot(deps: Pick<TurnDeps, "replySlots">, tenantId: string) {
  let asked: string | null = null;
  return {
    async take(replyId: string): Promise<void> {
      // Set before asking: an acquire that timed out may still run once Redis answers again, and the
      // release, sent after it on the same connection, then runs after it.
      asked = replyId;
      await deps.replySlots.acquire(tenantId, replyId);
    },
    async giveBack(): Promise<void> {
      if (asked) await deps.replySlots.release(tenantId, asked).catch(() => {});
    },
  };
}

/** Starts a stored turn's reply (events, job); its slot is given back if that fails. */
async function startStoredReply(
  deps: TurnDeps,
  tenantId: string,
  stored: { messages: MessageRow[]; reply: MessageRow | null },
  turn: NewTurn,
  slot: ReturnType<typeof turnSlot>,
): Promise<void> {
  if (!stored.reply) return;
  await startReply(deps, tenantId, { messages: stored.messages, reply: stored.reply }, turn).catch(async (err: unknown) => {
    await slot.giveBack();
    throw err;
  });
}

/** The checks that need nothing stored. */
function checkTurnRequest(deps: TurnDeps, conversationId: string, turn: NewTurn): void {
  // A turn of no messages is a reply to the stored history as it is (regenerate, a full-history client that sent nothing new).
  if (turn.messages.length === 0 && !turn.reply) throw new InvalidRequestError("At least one message is needed.", "messages");
  if (turn.replaces !== undefined && (!turn.reply || turn.messages.length > 0)) throw new Error("a regenerated turn is one reply");
  if (turn.replaces !== undefined && !looksLikeId("msg", turn.replaces)) throw new NotFoundError("message", turn.replaces);
  if (!looksLikeId("conv", conversationId)) throw new NotFoundError("conversation", conversationId);
  if (turn.model !== undefined && !deps.models.resolve(turn.model)) {
    throw new ModelNotFoundError(turn.model, deps.models.describeServed());
  }
  if (turn.reply) assertOneChoice(turn.params ?? {});
}

/** The conversation's counters as a turn of `count` messages leaves them (both write paths bump them alike). */
const seqsTakenBy = (count: number) => ({
  lastSeq: sql`${conversations.lastSeq} + ${count}`,
  messageCount: sql`${conversations.messageCount} + ${count}`,
  updatedAt: sql`now()`,
});

type ConversationSettings = Pick<ConversationRow, "model" | "system" | "params" | "contextStrategy">;

/**
 * The conversation as a turn is checked against, in one statement: its settings and last seq, the reply
 * in flight if any, the running token total of its newest message, and `version` (the row's xmin, which
 * every update of the row changes), which the write then requires unchanged. Null: no such conversation.
 */
const turnState = prepared((db: Database) => {
  const conversationId = sql.placeholder("conversationId");
  const busyReply = db
    .select({ id: messages.id })
    .from(messages)
    .where(and(eq(messages.conversationId, conversationId), replyInFlightSql))
    .limit(1);
  // The newest message: no seq is above the conversation's last_seq, and a deleted item leaves a gap.
  const newest = db
    .select({ historyTokens: messages.historyTokens })
    .from(messages)
    .where(eq(messages.conversationId, conversationId))
    .orderBy(desc(messages.seq))
    .limit(1);
  return db
    .select({
      version: sql<string>`${conversations}.xmin::text`,
      lastSeq: conversations.lastSeq,
      model: conversations.model,
      system: conversations.system,
      params: conversations.params,
      contextStrategy: conversations.contextStrategy,
      busyReplyId: sql<string | null>`(${busyReply})`,
      historyTokensBefore: sql<number>`coalesce((${newest}), 0)`.mapWith(Number),
    })
    .from(conversations)
    .where(and(eq(conversations.id, conversationId), eq(conversations.tenantId, sql.placeholder("tenantId"))))
    .prepare("turn_state");
});

async function readTurnState(db: Database, tenantId: string, conversationId: string) {
  const [state] = await turnState(db).execute({ tenantId, conversationId });
  return state ?? null;
}

/**
 * One statement: bumps the conversation's seqs if its row is still at `version` with nothing in flight,
 * and inserts the turn's rows numbered from the bumped last_seq. When the row has moved on, the bump
 * returns nothing, the rows' seq is null and the statement fails (not_null_violation on seq) having
 * stored nothing.
 *
 * The row is locked NOWAIT first: a statement outside a transaction that waited for a lock would commit
 * when the lock came free, however long after its request was answered 503 or its process died (and a
 * queued reply with no job would hold the conversation busy). Held by another, it fails at once
 * (lock_not_available) and the locked path waits instead, inside a transaction that a dead or timed-out
 * caller never commits.
 */
async function insertTurnRows(
  db: Database | Transaction,
  tenantId: string,
  conversationId: string,
  version: string,
  rows: TurnRow[],
): Promise<MessageRow[]> {
  const values: Record<string, unknown> = { tenantId, conversationId, version };
  const lastSeq = rows.at(-1)?.seq ?? 0;
  rows.forEach((row, i) => {
    for (const key of Object.keys(row)) if (!BOUND_ELSEWHERE.has(key) && !(key in TURN_ROW_COLUMNS)) throw new Error(`the turn insert binds no column for '${key}'`);
    values[`back${i}`] = lastSeq - row.seq;
    for (const [key, type] of Object.entries(TURN_ROW_COLUMNS) as [keyof typeof TURN_ROW_COLUMNS, ColumnType][]) {
      values[`${key}${i}`] = bound(type, row[key] ?? ABSENT[key] ?? null);
    }
  });
  const statement = rows.length <= PREPARED_TURN_ROWS ? turnInsert(db, rows.length) : buildTurnInsert(db, rows.length);
  return statement.execute(values);
}

type TurnRow = typeof messages.$inferInsert & { seq: number };
type ColumnType = "text" | "json" | "jsonb" | "int" | "bigint" | "timestamptz";

/**
 * The columns each of a turn's rows binds, with their SQL types: every row binds them all (an absent value as
 * its column's default), so one statement text serves every turn of the same number of rows. A bound value
 * is cast in SQL rather than encoded by drizzle, which would turn a null json into 'null'.
 */
const TURN_ROW_COLUMNS = {
  id: "text",
  role: "text",
  content: "text",
  parts: "json",
  name: "text",
  toolCalls: "json",
  toolCallId: "text",
  reasoning: "text",
  status: "text",
  metadata: "jsonb",
  model: "text",
  params: "json",
  tokens: "int",
  historyTokens: "bigint",
  createdAt: "timestamptz",
  completedAt: "timestamptz",
} as const satisfies Partial<Record<keyof TurnRow, ColumnType>>;

/** The turn's own placeholders (tenantId, conversationId) and the seq, numbered from the bumped last_seq. */
const BOUND_ELSEWHERE = new Set(["tenantId", "conversationId", "seq"]);

/** The column defaults (src/db/schema.ts) of the columns that have one other than null; created_at's is now(). */
const ABSENT: Partial<Record<keyof typeof TURN_ROW_COLUMNS, unknown>> = {
  metadata: {},
  tokens: 0,
  get createdAt() {
    return new Date();
  },
};

const bound = (type: ColumnType, value: unknown): unknown =>
  type === "json" || type === "jsonb" ? jsonParam(value) : value instanceof Date ? value.toISOString() : value;

/** Turns of up to this many rows (a message and its reply, a few tool results) reuse a statement built once. */
const PREPARED_TURN_ROWS = 8;

/** The turn's insert for `count` rows (see insertTurnRows), every value a placeholder. */
function buildTurnInsert(db: Database | Transaction, count: number) {
  const p = sql.placeholder;
  const conversationId = p("conversationId");
  const inFlight = and(eq(messages.conversationId, conversationId), replyInFlightSql);
  const asRead = and(eq(conversations.id, conversationId), eq(conversations.tenantId, p("tenantId")), sql`${conversations}.xmin::text = ${p("version")}`);
  const locked = db.$with("locked").as(
    db.select({ id: sql<string>`${conversations.id}`.as("locked_id") }).from(conversations).where(asRead).for("update", { noWait: true }),
  );
  const bumped = db.$with("bumped").as(
    db
      .update(conversations)
      .set(seqsTakenBy(count))
      .where(
        and(
          sql`${conversations.id} = (select locked_id from locked)`,
          notExists(db.select({ one: sql`1` }).from(messages).where(inFlight)),
        ),
      )
      .returning({ lastSeq: conversations.lastSeq }),
  );
  const row = (i: number) => ({
    tenantId: sql`${p("tenantId")}`,
    conversationId: sql`${conversationId}`,
    seq: sql`(select ${bumped.lastSeq} from ${bumped}) - ${p(`back${i}`)}::int`,
    ...(Object.fromEntries(Object.entries(TURN_ROW_COLUMNS).map(([key, type]) => [key, sql`${p(`${key}${i}`)}::${sql.raw(type)}`])) as Record<
      keyof typeof TURN_ROW_COLUMNS,
      SQL
    >),
  });
  return db
    .with(locked, bumped)
    .insert(messages)
    .values(Array.from({ length: count }, (_, i) => row(i)))
    .returning()
    .prepare("turn_insert");
}

const turnInsert = preparedByKey(buildTurnInsert);

/**
 * The rows a turn stores, from the conversation's settings and where its history ends, after the checks
 * that refuse a turn before anything is stored (the model served, one choice, the turn fits its window).
 */
function planTurnRows(
  deps: TurnDeps,
  tenantId: string,
  conversationId: string,
  turn: NewTurn,
  at: { settings: ConversationSettings; firstSeq: number; historyTokensBefore: number; replyId: string | null },
) {
  const model = turn.model ?? at.settings.model;
  if (turn.reply) assertOneChoice(at.settings.params);
  if (turn.reply && !deps.models.resolve(model)) {
    throw new ModelNotFoundError(model, deps.models.describeServed());
  }
  const { replyId } = at;
  // One timestamp for the whole turn: it is how failed-turns.ts finds a turn's messages.
  const now = new Date();
  const given = completedMessageRows(turn.messages, {
    tenantId,
    conversationId,
    firstSeq: at.firstSeq,
    now,
    historyTokensBefore: at.historyTokensBefore,
  });
  const historyTokensAfter = given.at(-1)?.historyTokens ?? at.historyTokensBefore;
  const params = { ...at.settings.params, ...(turn.params ?? {}) };
  const settings = turnSettings(at.settings, params);
  if (turn.reply) {
    // Refused before anything is stored: a turn that could never be sent stores nothing.
    assertTurnFits(turnBudget(model, deps.contextWindows.forModel(model), settings.system, params), {
      strategy: settings.contextStrategy,
      newTokens: given.reduce((n, m) => n + m.tokens, 0),
      historyTokensAfter,
      param: turn.param ?? "content",
    });
  }
  const reply = replyId
    ? {
        id: replyId,
        tenantId,
        conversationId,
        seq: at.firstSeq + given.length,
        role: "assistant" as const,
        content: "",
        status: "queued" as const,
        model,
        params: turn.params ?? null,
        // Counts nothing until it ends (finishReply adds its tokens).
        historyTokens: historyTokensAfter,
        createdAt: now,
      }
    : null;
  return { replyId, settings, rows: reply ? [...given, reply] : given };
}

/**
 * The turn in one transaction that holds the conversation's row lock from its
 * first statement: used for a regenerated reply (which deletes the one it
 * replaces first) and when the row changed under the faster path. The row
 * lock serialises concurrent appends; two replies racing past the in-flight
 * check are stopped by the one-in-flight unique index.
 */
async function appendTurnLocked(
  deps: TurnDeps,
  tenantId: string,
  conversationId: string,
  turn: NewTurn,
): Promise<{ messages: MessageRow[]; reply: MessageRow | null }> {
  // Seqs the turn adds: a replacing reply takes the seq of the one it replaces.
  const count = turn.messages.length + (turn.reply && !turn.replaces ? 1 : 0);
  const slot = turnSlot(deps, tenantId);
  const inFlight = and(eq(messages.conversationId, conversationId), replyInFlightSql);
  const stored = await dbSpan("append turn (locked)", "INSERT", "messages", () => deps.db
    .transaction(async (tx) => {
      // One statement takes the row lock, checks nothing is in flight and reserves the seqs.
      const [bumped] = await tx
        .update(conversations)
        .set(seqsTakenBy(count))
        .where(
          and(
            eq(conversations.id, conversationId),
            eq(conversations.tenantId, tenantId),
            turn.expectLastSeq === undefined ? undefined : eq(conversations.lastSeq, turn.expectLastSeq),
            notExists(tx.select({ one: sql`1` }).from(messages).where(inFlight)),
          ),
        )
        .returning({
          lastSeq: conversations.lastSeq,
          model: conversations.model,
          system: conversations.system,
          params: conversations.params,
          contextStrategy: conversations.contextStrategy,
        });
      // Asked on this transaction's own connection: a second one from the pool while holding this one
      // is how concurrent appends once took every connection and waited for each other forever.
      if (!bumped) throw await whyNoTurn(tx, tenantId, conversationId, turn.expectLastSeq);
      await assertToolResultsAnswerCalls(tx, conversationId, turn.messages);
      if (turn.replaces) await removeReplacedReply(tx, conversationId, turn.replaces, bumped.lastSeq);
      // With a replaced reply, the turn builds on the message before it.
      const firstSeq = bumped.lastSeq - count + (turn.replaces ? 0 : 1);
      // The newest earlier message, not the one at firstSeq - 1: a deleted item leaves a gap in seqs.
      const [previous] = await tx
        .select({ historyTokens: messages.historyTokens })
        .from(messages)
        .where(and(eq(messages.conversationId, conversationId), lt(messages.seq, firstSeq)))
        .orderBy(desc(messages.seq))
        .limit(1);
      const planned = planTurnRows(deps, tenantId, conversationId, turn, {
        settings: bumped,
        firstSeq,
        historyTokensBefore: previous?.historyTokens ?? 0,
        replyId: turn.reply ? newMessageId() : null,
      });
      if (planned.replyId) await slot.take(planned.replyId);
      // The waits above (the row lock, Redis) may have outlasted the request: its caller has been told
      // 503, so the turn is rolled back rather than stored behind its back.
      turn.signal?.throwIfAborted();
      const rows = await tx.insert(messages).values(planned.rows).returning();
      rows.sort((a, b) => a.seq - b.seq);
      const reply = turn.reply ? (rows.pop() ?? null) : null;
      await turn.onStored?.(tx, { messages: rows, reply, settings: planned.settings });
      return { messages: rows, reply };
    })
    .catch(async (err: unknown) => {
      await slot.giveBack();
      if (!isUniqueViolation(err, "messages_one_reply_in_flight_idx")) throw err;
      throw await whyNoTurn(deps.db, tenantId, conversationId, turn.expectLastSeq);
    }));

  await startStoredReply(deps, tenantId, stored, turn, slot);
  return stored;
}

/** A conversation stores one reply per turn: `n` > 1 would ask the upstream for choices nobody keeps. */
function assertOneChoice(params: Record<string, unknown>): void {
  const n = params.n;
  if (n === undefined || n === null || n === 1) return;
  throw new InvalidRequestError("A conversation stores one reply per turn: `n` must be 1 (ask the stateless /v1/chat/completions for more).", "params.n");
}

/**
 * Each `tool` message must answer a tool call made before it: by an earlier
 * message of the same request, or one stored completed in the conversation (a
 * failed or cancelled reply's calls are never sent again, so nothing may answer
 * them). Stored calls are looked for only after the conversation's newest
 * `user` message: a result answers the calls of the exchange in progress
 * (upstreams refuse a tool result with a user message between it and its
 * call), and the read stays a short index range however long the
 * conversation (json_array_elements over those messages' calls). Read only
 * when the turn has a tool message.
 */
async function assertToolResultsAnswerCalls(tx: Database | Transaction, conversationId: string, given: GivenMessage[]): Promise<void> {
  const unknown = toolResultsWithoutCall(given);
  if (unknown.length === 0) return;
  const ids = [...new Set(unknown.map((u) => u.id))];
  // max(seq) of one role walks messages_conversation_seq_idx backwards from the newest message until it meets one.
  const newestUserSeq = sql`coalesce((select max(u.seq) from ${messages} u where u.conversation_id = ${conversationId} and u.role = 'user'), 0)`;
  const stored = await tx.execute<{ id: string }>(sql`
    select distinct c->>'id' as id
    from ${messages}, json_array_elements(${messages.toolCalls}) as c
    where ${messages.conversationId} = ${conversationId} and ${messages.seq} > ${newestUserSeq}
      and ${messages.toolCalls} is not null and ${messages.status} = 'completed'
      and c->>'id' in ${sql`(${sql.join(ids.map((id) => sql`${id}`), sql`, `)})`}`);
  const found = new Set(stored.map((r) => r.id));
  const missing = unknown.find((u) => !found.has(u.id));
  if (missing) {
    throw new InvalidRequestError(
      `tool_call_id '${missing.id}' answers no tool call made earlier in this conversation.`,
      given.length === 1 ? "tool_call_id" : `messages.${missing.index}.tool_call_id`,
    );
  }
}

/** Deletes the reply a regenerated one replaces, after checking it is the conversation's last message and has ended. */
async function removeReplacedReply(tx: Transaction, conversationId: string, replyId: string, lastSeq: number): Promise<void> {
  const [old] = await tx
    .select({ seq: messages.seq, role: messages.role, status: messages.status, content: messages.content, createdAt: messages.createdAt })
    .from(messages)
    .where(and(eq(messages.id, replyId), eq(messages.conversationId, conversationId)));
  if (!old) throw new NotFoundError("message", replyId);
  if (old.role !== "assistant") throw new InvalidRequestError("Only a reply can be regenerated.", null, "not_a_reply");
  if (old.seq !== lastSeq) {
    throw new InvalidRequestError("Only the conversation's last message can be regenerated.", null, "not_last_reply");
  }
  await tx.delete(messages).where(eq(messages.id, replyId));
  await restoreTurnToHistory(tx, { ...old, conversationId });
}

type PgErrorFields = { code?: string; constraint_name?: string; column_name?: string };
const pgError = (err: unknown): PgErrorFields | undefined => (err as { cause?: PgErrorFields }).cause ?? (err as PgErrorFields);

function isUniqueViolation(err: unknown, constraint: string): boolean {
  const cause = pgError(err);
  return cause?.code === "23505" && cause.constraint_name === constraint;
}

/** 55P03: a NOWAIT lock was held by another transaction. */
const isLockNotAvailable = (err: unknown): boolean => pgError(err)?.code === "55P03";

function isNotNullViolation(err: unknown, column: string): boolean {
  const cause = pgError(err);
  return cause?.code === "23502" && cause.column_name === column;
}

/**
 * Why a conversation took no turn: it does not exist (for this tenant), or a reply is in flight. One
 * statement, on whatever connection the caller holds (its transaction's, or the pool after it ended).
 */
async function whyNoTurn(db: Database | Transaction, tenantId: string, conversationId: string, expectLastSeq?: number): Promise<Error> {
  const busyReply = db
    .select({ id: messages.id })
    .from(messages)
    .where(and(eq(messages.conversationId, conversationId), replyInFlightSql))
    .limit(1);
  const [conversation] = await db
    .select({ busyReplyId: sql<string | null>`(${busyReply})` })
    .from(conversations)
    .where(and(eq(conversations.id, conversationId), eq(conversations.tenantId, tenantId)));
  if (!conversation) return new NotFoundError("conversation", conversationId);
  if (expectLastSeq !== undefined && conversation.busyReplyId === null) return new HistoryMovedOnError();
  // The reply may have ended in between; the caller can simply try again.
  return new ConversationBusyError(conversation.busyReplyId ?? "a reply that has just ended");
}

/**
 * Opens the reply's event stream (so the requester and any follower read the
 * turn from its first event) and hands the reply to the worker pool. If Redis
 * refuses, the reply is failed rather than left queued with no job behind it.
 */
async function startReply(
  deps: TurnDeps,
  tenantId: string,
  { messages: appended, reply }: { messages: MessageRow[]; reply: MessageRow },
  turn: NewTurn,
): Promise<void> {
  try {
    await deps.replyEvents.append(reply.id, [
      ...appended.map((m) => ({ event: "message.created" as const, data: toMessageResource(m) })),
      { event: "message.created", data: toMessageResource(reply) },
    ]);
    await deps.jobQueue.enqueue({
      kind: "reply",
      replyId: reply.id,
      tenantId,
      upstreamStream: turn.upstreamStream ?? true,
      requestId: turn.requestId,
    });
  } catch (cause) {
    await finishReply(deps.db, reply.id, {
      status: "failed",
      content: "",
      error: { message: "The reply could not be queued.", type: "server_error", code: "queue_unavailable" },
    });
    throw Object.assign(new DependencyUnavailableError("The job queue (Redis)"), { cause });
  }
}
