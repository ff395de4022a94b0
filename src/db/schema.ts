import { sql } from "drizzle-orm";
import {
  bigint,
  boolean,
  check,
  primaryKey,
  index,
  integer,
  json,
  jsonb,
  pgTable,
  text,
  timestamp,
  uniqueIndex,
} from "drizzle-orm/pg-core";

/** The only description of the database; migrations/ is generated from it. */

/** An app using Parley: every conversation, message and API key belongs to one. Its id is its name. */
export const tenants = pgTable("tenants", {
  id: text("id").primaryKey(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * A tenant's API key. Only its SHA-256 is stored; `prefix` is the start of the
 * key, shown in lists so a key can be told apart and revoked without the secret.
 */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    name: text("name"),
    prefix: text("prefix").notNull(),
    hash: text("hash").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [
    uniqueIndex("api_keys_hash_idx").on(t.hash),
    uniqueIndex("api_keys_prefix_idx").on(t.prefix),
    index("api_keys_tenant_id_idx").on(t.tenantId, t.id),
  ],
);

/**
 * `auto` drops the oldest turns that do not fit; `summarize` folds them into a
 * running summary sent after the system prompt; `strict` refuses a turn whose
 * history does not fit.
 */
export const contextStrategies = ["auto", "summarize", "strict"] as const;
export type ContextStrategy = (typeof contextStrategies)[number];

export const conversations = pgTable(
  "conversations",
  {
    id: text("id").primaryKey(),
    // Every row of user data belongs to a tenant, and every query is scoped by it.
    tenantId: text("tenant_id")
      .notNull()
      .references(() => tenants.id),
    title: text("title"),
    model: text("model").notNull(),
    system: text("system"),
    // json, not jsonb: params (tools, json schemas) reach the upstream with their keys in the order given.
    params: json("params").$type<Record<string, unknown>>().notNull().default({}),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default({}),
    messageCount: integer("message_count").notNull().default(0),
    // The seq of the newest message; appends bump it under the row lock, so seqs never repeat (a deleted item leaves a gap).
    lastSeq: integer("last_seq").notNull().default(0),
    // How a turn's history is fitted into the model's context window (see src/context).
    contextStrategy: text("context_strategy", { enum: contextStrategies }).notNull().default("auto"),
    // `summarize`: what the messages up to summary_through_seq said, updated by a background job.
    summary: text("summary"),
    summaryThroughSeq: integer("summary_through_seq").notNull().default(0),
    summaryTokens: integer("summary_tokens").notNull().default(0),
    summaryUpdatedAt: timestamp("summary_updated_at", { withTimezone: true }),
    // Made by the Responses API to hold a `previous_response_id` chain: not listed with the tenant's conversations.
    hidden: boolean("hidden").notNull().default(false),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // "Conversations newest first" for one tenant; ids are time-sortable.
    index("conversations_tenant_id_idx").on(t.tenantId, t.id),
  ],
);

export const messageRoles = ["system", "developer", "user", "assistant", "tool"] as const;
export type MessageRole = (typeof messageRoles)[number];

export const messageStatuses = ["queued", "in_progress", "completed", "failed", "cancelled"] as const;
export type MessageStatus = (typeof messageStatuses)[number];

export interface StoredUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: Record<string, unknown>;
  completion_tokens_details?: Record<string, unknown>;
}

export interface StoredError {
  message: string;
  type: string;
  code: string;
  /** Set when the upstream refused the request (a 4xx other than 408/429): its status, and the field it named. */
  status?: number;
  param?: string | null;
}

/** Stored as given; the shapes are src/domain/chat-message.ts's (declared structurally so the schema imports nothing). */
export type StoredContentPart = { type: string; [field: string]: unknown };
export interface StoredToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string; [field: string]: unknown };
  [field: string]: unknown;
}

export const messages = pgTable(
  "messages",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    conversationId: text("conversation_id")
      .notNull()
      .references(() => conversations.id, { onDelete: "cascade" }),
    seq: integer("seq").notNull(),
    role: text("role", { enum: messageRoles }).notNull(),
    // The text: a string content as given, or the texts of `parts` joined (token counts, old clients).
    content: text("content").notNull().default(""),
    // The content as given when it was an array of parts (text, image_url); null for a string.
    parts: json("parts").$type<StoredContentPart[]>(),
    name: text("name"),
    // An assistant message's tool calls (a reply's, accumulated from the stream); json keeps them as given.
    toolCalls: json("tool_calls").$type<StoredToolCall[]>(),
    // A tool message: the id of the call it answers.
    toolCallId: text("tool_call_id"),
    // A reply's reasoning (reasoning_content), apart from its content; not sent back unless a turn asks.
    reasoning: text("reasoning"),
    // A reply's logprobs, as the upstream streamed them (the choice's `logprobs.content` entries, concatenated).
    logprobs: json("logprobs").$type<unknown>(),
    status: text("status", { enum: messageStatuses }).notNull(),
    model: text("model"),
    finishReason: text("finish_reason"),
    usage: jsonb("usage").$type<StoredUsage>(),
    error: jsonb("error").$type<StoredError>(),
    metadata: jsonb("metadata").$type<Record<string, string>>().notNull().default({}),
    // Per-turn sampling overrides, merged over the conversation's params by the worker.
    // json, not jsonb, as on conversations: key order is kept.
    params: json("params").$type<Record<string, unknown>>(),
    // The message's size in the model's prompt, counted once when its content is final.
    tokens: integer("tokens").notNull().default(0),
    // The tokens of every message up to this one that goes into history (failed replies count 0):
    // never decreasing along seq, so "the newest messages that fit" is an index range.
    historyTokens: bigint("history_tokens", { mode: "number" }).notNull().default(0),
    // On a reply: how many earlier messages and tokens (system prompt included) were sent for it.
    contextMessages: integer("context_messages"),
    contextTokens: integer("context_tokens"),
    // On a reply: which run generates it; each run that takes the reply bumps it, and only that run's writes
    // (its events, its final row) are taken, so a run that lost its job cannot overwrite a newer one.
    attempt: integer("attempt").notNull().default(0),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    completedAt: timestamp("completed_at", { withTimezone: true }),
    // On a reply: when its stored content's first token was written to its events (the write's stream id);
    // stored with its end, null when it streamed nothing.
    firstTokenAt: timestamp("first_token_at", { withTimezone: true }),
  },
  (t) => [
    // History reads and "the last N messages" are range scans of this index.
    uniqueIndex("messages_conversation_seq_idx").on(t.conversationId, t.seq),
    // Where a turn's history starts: the first message whose running total reaches a threshold. seq breaks ties
    // (messages that count 0 tokens) in index order, so "order by history_tokens, seq limit 1" reads one entry
    // whatever plan is used; without it a generic plan made while the table was small sorted every candidate.
    index("messages_conversation_history_tokens_seq_idx").on(t.conversationId, t.historyTokens, t.seq),
    // At most one reply in flight per conversation, whatever a bug elsewhere does.
    uniqueIndex("messages_one_reply_in_flight_idx")
      .on(t.conversationId)
      .where(sql`status in ('queued', 'in_progress')`),
    check("messages_seq_positive", sql`${t.seq} > 0`),
  ],
);

/**
 * A Responses API response: a turn of a conversation (the caller's, or a hidden one holding a
 * `previous_response_id` chain). Its input items are the conversation's messages from `input_from_seq`
 * up to its reply, its output is the reply; `request` is what the request fixed (model, instructions,
 * tools, …) as the response object echoes it.
 */
export const responses = pgTable(
  "responses",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    conversationId: text("conversation_id")
      .notNull()
      .references(() => conversations.id, { onDelete: "cascade" }),
    // The reply message; not a foreign key, since a conversation's items (and so the reply) can be deleted on their own.
    replyId: text("reply_id").notNull(),
    inputFromSeq: integer("input_from_seq").notNull(),
    previousResponseId: text("previous_response_id"),
    // Whether the conversation is the caller's (shown as `conversation` on the response) or a hidden chain's.
    conversationGiven: boolean("conversation_given").notNull(),
    // json, not jsonb: tools and schemas are echoed with their keys in the order given.
    request: json("request").$type<Record<string, unknown>>().notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex("responses_reply_id_idx").on(t.replyId),
    // Deleting a conversation deletes its responses (the cascade looks them up by it).
    index("responses_conversation_id_idx").on(t.conversationId),
  ],
);

export type ResponseRow = typeof responses.$inferSelect;
export type ConversationRow = typeof conversations.$inferSelect;
export type ApiKeyRow = typeof apiKeys.$inferSelect;
export type MessageRow = typeof messages.$inferSelect;

/**
 * An `Idempotency-Key` a tenant has used: the request it came with (as a
 * fingerprint) and, once the request has stored something, what it stored,
 * so a repeat is answered from it instead of doing the work again.
 */
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    tenantId: text("tenant_id").notNull(),
    key: text("key").notNull(),
    fingerprint: text("fingerprint").notNull(),
    result: jsonb("result").$type<Record<string, unknown>>(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.tenantId, t.key] }), index("idempotency_keys_created_at_idx").on(t.createdAt)],
);
