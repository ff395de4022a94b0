import { createHash } from "node:crypto";
import { and, asc, eq, sql } from "drizzle-orm";
import type { Database } from "../db/client.ts";
import { prepared } from "../db/statements.ts";
import { conversations, messages, type StoredToolCall } from "../db/schema.ts";
import { contentText, type ContentPart, type ToolCall } from "./chat-message.ts";
import { inHistorySql } from "./history.ts";

/**
 * Full-history clients (every chat framework) send the whole conversation on
 * each turn. On the bound endpoint, the part of a request that is already
 * stored is not stored again: when the request's messages begin with the
 * conversation's system prompt (optionally) and then its whole stored history
 * (the messages that go into history, in order), only what follows is a new
 * turn. Anything else (a history that diverges anywhere) is appended as sent.
 */

/** A message as a request gives it: the chat-completions shape (content a string or parts), or a turn's (text and parts apart). */
export interface SentMessage {
  role: string;
  content: string | ContentPart[] | null;
  parts?: ContentPart[] | null | undefined;
  name?: string | undefined;
  tool_calls?: ToolCall[] | undefined;
  tool_call_id?: string | undefined;
}

/** A stored message as far as comparing it with a sent one needs: hashes of what may be long. */
interface StoredForComparison {
  role: string;
  textHash: string;
  partsHash: string | null;
  hasImages: boolean;
  name: string | null;
  toolCallId: string | null;
  toolCalls: StoredToolCall[] | null;
}

const sha256 = (text: string) => createHash("sha256").update(text, "utf8").digest("hex");
const sqlSha256 = (text: ReturnType<typeof sql>) => sql<string>`encode(sha256(convert_to(${text}, 'UTF8')), 'hex')`;

/**
 * How many of a request's leading messages are stored already: the
 * conversation's system prompt when the request starts with it (a `system` or
 * `developer` message of exactly its text), then the whole stored history.
 * 0 when the request does not begin with the whole stored history.
 *
 * Reads at most one more stored message than the request holds (hashes of
 * their content, not the content), so a long conversation costs what the
 * request does: a request shorter than the stored history is told apart by
 * the count alone.
 */
export async function storedHistoryPrefixLength(
  db: Database,
  tenantId: string,
  conversationId: string,
  given: SentMessage[],
): Promise<number> {
  const first = given[0];
  const mayLeadWithSystem = first !== undefined && (first.role === "system" || first.role === "developer") && !hasImages(first);
  const [stored, system] = await Promise.all([
    storedHistoryHead(db, tenantId, conversationId, given.length + 1),
    mayLeadWithSystem ? conversationSystem(db, tenantId, conversationId) : null,
  ]);
  const starts = mayLeadWithSystem && system !== null && contentText(first.content) === system ? [1, 0] : [0];
  for (const start of starts) {
    if (stored.length > given.length - start) continue;
    if (stored.every((row, i) => sameMessage(row, given[start + i]!))) return start + stored.length;
  }
  return 0;
}

/** The conversation's first `limit` messages that go into history, in order. */
async function storedHistoryHead(db: Database, tenantId: string, conversationId: string, limit: number): Promise<StoredForComparison[]> {
  return historyHeadStatement(db).execute({ tenantId, conversationId, limit });
}

// Built once per database handle (src/db/statements.ts): a full-history client sends every turn through here.
const historyHeadStatement = prepared((db: Database) =>
  db
    .select({
      role: messages.role,
      textHash: sqlSha256(sql`${messages.content}`),
      partsHash: sql<string | null>`case when ${messages.parts} is null then null else ${sqlSha256(sql`${messages.parts}::text`)} end`,
      hasImages: sql<boolean>`coalesce(${messages.parts}::jsonb @> '[{"type":"image_url"}]'::jsonb, false)`,
      name: messages.name,
      toolCallId: messages.toolCallId,
      toolCalls: messages.toolCalls,
    })
    .from(messages)
    .where(and(eq(messages.conversationId, sql.placeholder("conversationId")), eq(messages.tenantId, sql.placeholder("tenantId")), inHistorySql))
    .orderBy(asc(messages.seq))
    .limit(sql.placeholder("limit"))
    .prepare("stored_history_head"),
);

async function conversationSystem(db: Database, tenantId: string, conversationId: string): Promise<string | null> {
  const [row] = await conversationSystemStatement(db).execute({ tenantId, conversationId });
  return row?.system ?? null;
}

const conversationSystemStatement = prepared((db: Database) =>
  db
    .select({ system: conversations.system })
    .from(conversations)
    .where(and(eq(conversations.id, sql.placeholder("conversationId")), eq(conversations.tenantId, sql.placeholder("tenantId"))))
    .prepare("conversation_system"),
);

const partsOf = (m: SentMessage): ContentPart[] | null => m.parts ?? (Array.isArray(m.content) ? m.content : null);
const hasImages = (m: SentMessage) => partsOf(m)?.some((p) => p.type !== "text") ?? false;

/**
 * A sent message is the stored one when role, text, images, name, the tool
 * call it answers and its tool calls (id, name, arguments) are the same. Text
 * sent as a string or as text parts is the same text; reasoning is not
 * compared (it is stored apart and clients rarely send it back).
 */
function sameMessage(stored: StoredForComparison, sent: SentMessage): boolean {
  if (stored.role !== sent.role) return false;
  if (stored.textHash !== sha256(contentText(sent.content))) return false;
  if (stored.hasImages || hasImages(sent)) {
    const parts = partsOf(sent);
    if (stored.partsHash === null || parts === null || stored.partsHash !== sha256(JSON.stringify(parts))) return false;
  }
  if ((stored.name ?? null) !== (sent.name ?? null)) return false;
  if ((stored.toolCallId ?? null) !== (sent.tool_call_id ?? null)) return false;
  return sameToolCalls(stored.toolCalls ?? [], sent.tool_calls ?? []);
}

function sameToolCalls(stored: StoredToolCall[], sent: ToolCall[]): boolean {
  return (
    stored.length === sent.length &&
    stored.every((call, i) => {
      const other = sent[i]!;
      return call.id === other.id && call.function.name === other.function.name && call.function.arguments === other.function.arguments;
    })
  );
}
