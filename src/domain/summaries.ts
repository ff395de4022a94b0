import { and, asc, desc, eq, gt, lte } from "drizzle-orm";
import type { Logger } from "pino";
import type { ContextWindows } from "../context/context-windows.ts";
import { messageTokens } from "../context/tokens.ts";
import type { Database } from "../db/client.ts";
import { conversations, messages } from "../db/schema.ts";
import type { ModelRegistry } from "../providers/registry.ts";
import type { JobRun, ModelJobQueue, SummaryJob } from "../queue/completions.ts";
import { belongsInHistory } from "./history.ts";
import { callModel } from "./model-call.ts";
import { modelCallSpan } from "../observability/model-call-spans.ts";
import { summaryMessageTokens } from "./summary-message.ts";

export interface SummaryDeps {
  db: Database;
  models: ModelRegistry;
  contextWindows: ContextWindows;
  jobQueue: ModelJobQueue;
  log: Logger;
}

/** What the model is asked to do with the previous summary and the turns that no longer fit. */
export const SUMMARY_INSTRUCTIONS =
  "You keep a running summary of a conversation between a user and an assistant. You get the summary so far and the " +
  "turns that come after it. Answer with the updated summary only: the facts, names, decisions, open questions and the " +
  "user's preferences that later turns may need, in a few short paragraphs. Do not address the user.";

/** The longest summary asked for, in tokens: a quarter of the window, at most 1,024. */
const summaryMaxTokens = (contextTokens: number) => Math.min(1_024, Math.floor(contextTokens / 4));

/**
 * Folds the messages after the summary into it: the model gets the previous
 * summary and only those messages, never the conversation from the start.
 * As many as fit the model's window go in one call; the rest are left to a
 * follow-up job. The summary is stored only if no other job moved it meanwhile.
 */
export async function runSummaryJob(deps: SummaryDeps, job: SummaryJob, run: JobRun): Promise<void> {
  const [conversation] = await deps.db
    .select()
    .from(conversations)
    .where(and(eq(conversations.id, job.conversationId), eq(conversations.tenantId, job.tenantId)));
  if (!conversation) return void deps.log.info("conversation was deleted; nothing to summarize");
  if (conversation.contextStrategy !== "summarize") return void deps.log.info("conversation no longer summarizes");
  const from = conversation.summaryThroughSeq;
  if (job.throughSeq <= from) return;
  const resolved = deps.models.resolve(conversation.model);
  if (!resolved) return void deps.log.warn({ model: conversation.model }, "summary model is no longer served");

  const window = deps.contextWindows.forModel(conversation.model);
  const maxTokens = summaryMaxTokens(window.contextTokens);
  const room = window.contextTokens - maxTokens - messageTokens(SUMMARY_INSTRUCTIONS) - conversation.summaryTokens - 64;
  const inConversation = eq(messages.conversationId, conversation.id);
  const [before] = await deps.db
    .select({ total: messages.historyTokens })
    .from(messages)
    .where(and(inConversation, lte(messages.seq, from)))
    .orderBy(desc(messages.seq))
    .limit(1);
  // The last message that still fits in this call, by the running totals (at least one, so the job moves on).
  const [last] = await deps.db
    .select({ seq: messages.seq })
    .from(messages)
    .where(and(inConversation, gt(messages.seq, from), lte(messages.seq, job.throughSeq), lte(messages.historyTokens, (before?.total ?? 0) + room)))
    .orderBy(desc(messages.seq))
    .limit(1);
  const through = last?.seq ?? from + 1;
  const evicted = (
    await deps.db
      .select({ role: messages.role, status: messages.status, content: messages.content, toolCalls: messages.toolCalls })
      .from(messages)
      .where(and(inConversation, gt(messages.seq, from), lte(messages.seq, through)))
      .orderBy(asc(messages.seq))
  ).filter(belongsInHistory);

  // A reply that only called tools says so, or the summary would show it as saying nothing.
  const called = (m: (typeof evicted)[number]) =>
    m.status === "completed" && m.toolCalls?.length ? ` [called ${m.toolCalls.map((c) => `${c.function.name}(${c.function.arguments})`).join(", ")}]` : "";
  const turns = evicted.map((m) => `${m.role}: ${m.content}${called(m)}`).join("\n\n");
  const traced = { provider: resolved.provider.name, model: resolved.upstreamModel, conversationId: conversation.id };
  const outcome = await modelCallSpan(traced, () => callModel({
    provider: resolved.provider,
    request: {
      model: resolved.upstreamModel,
      messages: [
        { role: "system", content: SUMMARY_INSTRUCTIONS },
        { role: "user", content: `Summary so far:\n${conversation.summary ?? "(none yet)"}\n\nNew turns:\n${turns}` },
      ],
      params: { max_tokens: maxTokens },
    },
    upstreamStream: false,
    signal: run.signal,
    onDelta: async () => {},
  }));
  if (outcome.status === "failed") throw new Error(`summarizing failed: ${outcome.error.code}`);

  const summary = outcome.content.trim();
  const [stored] = await deps.db
    .update(conversations)
    .set({ summary, summaryThroughSeq: through, summaryTokens: summaryMessageTokens(summary), summaryUpdatedAt: new Date() })
    .where(and(eq(conversations.id, conversation.id), eq(conversations.summaryThroughSeq, from)))
    .returning({ id: conversations.id });
  if (!stored) return void deps.log.info("another job moved the summary first");
  deps.log.info({ fromSeq: from, throughSeq: through, messages: evicted.length }, "summary updated");
  if (through < job.throughSeq) {
    await deps.jobQueue.enqueue({ ...job, fromSeq: through });
  }
}
