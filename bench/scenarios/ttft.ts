import { createConversations, type BenchContext, type ScenarioResult } from "../lib/context.ts";
import { runLoadProcess } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { check } from "../lib/targets.ts";

/** 1. Time to first token: streamed conversation turns through Parley vs. the same request sent straight to the upstream. */
export async function ttftOverhead(ctx: BenchContext): Promise<ScenarioResult> {
  const model = "bench-0-0-8";
  const result: ScenarioResult = { name: "ttft", title: "Time to first token overhead", cases: [], targets: [], notes: [] };
  for (const concurrency of [1, 16, 64]) {
    const requests = ctx.quick ? concurrency * 3 : Math.max(300, concurrency * 20);
    const conversations = await createConversations(ctx, concurrency, model);
    const direct = await runLoadProcess({ kind: "ttft", target: "direct", urls: [ctx.upstreamUrl], model, concurrency, requests, deadlineMs: 60_000 });
    // Every lane has its own conversation (one turn in flight each); lanes go to API processes in turn.
    const parley = await runLoadProcess({
      kind: "ttft",
      target: "parley",
      urls: ctx.apiUrls,
      model,
      conversations,
      concurrency,
      requests,
      deadlineMs: 60_000,
    });
    const overhead = {
      p50: parley.latencyMs.p50 - direct.latencyMs.p50,
      p90: parley.latencyMs.p90 - direct.latencyMs.p90,
      p99: parley.latencyMs.p99 - direct.latencyMs.p99,
    };
    result.cases.push({
      scenario: "ttft",
      case: `concurrency ${concurrency}`,
      figures: {
        requests: parley.completed,
        failed: parley.failed + direct.failed,
        "direct p50 ms": round(direct.latencyMs.p50),
        "parley p50 ms": round(parley.latencyMs.p50),
        "overhead p50 ms": round(overhead.p50),
        "overhead p90 ms": round(overhead.p90),
        "overhead p99 ms": round(overhead.p99),
        "overhead p50 ratio": round(parley.latencyMs.p50 / direct.latencyMs.p50, 1),
      },
      raw: { direct, parley },
    });
    if (concurrency === 1) {
      result.targets.push(
        check("TTFT overhead p50 at concurrency 1", overhead.p50, 3, "ms"),
        check("TTFT overhead p99 at concurrency 1", overhead.p99, 15, "ms"),
      );
    }
  }
  return result;
}
