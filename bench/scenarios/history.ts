import { createConversations, type BenchContext, type ScenarioResult } from "../lib/context.ts";
import { runLoadProcess } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { check, TARGETS } from "../lib/targets.ts";

/**
 * Gives a conversation `n` stored, completed messages (alternating user/assistant), straight in SQL,
 * with token counts and running totals as Parley keeps them (10 tokens each: 6 of text, 4 of overhead).
 */
async function seedHistory(ctx: BenchContext, conversationId: string, n: number): Promise<void> {
  await ctx.sql`
    insert into messages (id, tenant_id, conversation_id, seq, role, content, status, tokens, history_tokens, completed_at)
    select 'msg_seed' || lpad(s::text, 9, '0') || substr(${conversationId}, 6, 12), c.tenant_id, ${conversationId}, s,
           case when s % 2 = 1 then 'user' else 'assistant' end, 'Earlier message number ' || s, 'completed', 10, 10 * s, now()
    from generate_series(1, ${n}::int) s, conversations c where c.id = ${conversationId}`;
  await ctx.sql`update conversations set last_seq = ${n}, message_count = ${n} where id = ${conversationId}`;
}

/** 4. Turn overhead as a conversation grows: 10, 1,000 and 100,000 stored messages. */
export async function historyGrowth(ctx: BenchContext): Promise<ScenarioResult> {
  const sizes = ctx.quick ? [10, 100, 1_000] : [10, 1_000, 100_000];
  const turns = ctx.quick ? 5 : 30;
  const result: ScenarioResult = {
    name: "history",
    title: "History growth: sequential non-streaming turns in long conversations",
    cases: [],
    targets: [],
    notes: [],
  };
  let base = NaN;
  for (const size of sizes) {
    const [id] = await createConversations(ctx, 1, "bench-0-0-5");
    await seedHistory(ctx, id!, size);
    const load = await runLoadProcess({ kind: "turns", urls: ctx.apiUrls, conversations: [id!], requests: turns, deadlineMs: 180_000 });
    if (size === sizes[0]) base = load.latencyMs.p50;
    result.cases.push({
      scenario: "history",
      case: `${size} messages`,
      figures: {
        turns: load.completed,
        failed: load.failed,
        "turn p50 ms": round(load.latencyMs.p50),
        "turn p90 ms": round(load.latencyMs.p90),
        [`ratio to ${sizes[0]}`]: round(load.latencyMs.p50 / base, 2),
      },
      raw: load,
    });
  }
  const largest = result.cases.at(-1)!;
  result.targets.push(check(`History growth ratio at ${sizes.at(-1)} messages`, Number(largest.figures[`ratio to ${sizes[0]}`]), TARGETS.historyGrowth, "×"));
  return result;
}
