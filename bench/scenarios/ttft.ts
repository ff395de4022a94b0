import { latencyDistributionChart } from "../lib/charts.ts";
import { createConversations, type BenchContext, type ScenarioResult } from "../lib/context.ts";
import { floorTableDdl, type FloorWorkerSpec } from "../lib/floor.ts";
import type { LoadResult } from "../lib/load-client.ts";
import { runLoadProcess, startChild } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { check, TARGETS } from "../lib/targets.ts";

/**
 * 1. Time to first token: streamed conversation turns through Parley vs. the same request sent straight
 * to the upstream, beside the floor (one Postgres write transaction, one queue hop, one pub/sub hop).
 */
export async function ttftOverhead(ctx: BenchContext): Promise<ScenarioResult> {
  const model = "bench-0-0-8";
  const result: ScenarioResult = { name: "ttft", title: "Time to first token overhead", cases: [], targets: [], notes: [], charts: [] };
  // The floor holds one Postgres connection per request in flight: --quick (the test suite's run, beside
  // other test files) stops at 16, so it cannot take a default max_connections of 100 with the rest.
  const levels = ctx.quick ? [1, 16] : [1, 16, 64];
  await ctx.sql.unsafe(floorTableDdl);
  const floorSpec: FloorWorkerSpec = { redisUrl: ctx.redisUrl, prefix: ctx.prefix, concurrency: Math.max(...levels) };
  const floorWorker = await startChild("floor-worker", ["bench/lib/floor.ts", JSON.stringify(floorSpec)], { ready: "floor worker ready" });
  const panels: { panel: string; series: { name: string; distributionMs: number[] }[] }[] = [];
  try {
    for (const concurrency of levels) {
      const requests = ctx.quick ? concurrency * 3 : Math.max(300, concurrency * 20);
      const conversations = await createConversations(ctx, concurrency, model);
      const direct = await runLoadProcess({ kind: "ttft", target: "direct", urls: [ctx.upstreamUrl], model, concurrency, requests, deadlineMs: 60_000 });
      const floor: LoadResult = await runLoadProcess({
        kind: "floor",
        ...floorSpec,
        databaseUrl: ctx.databaseUrl,
        concurrency,
        requests,
        deadlineMs: 60_000,
      });
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
          failed: parley.failed + direct.failed + floor.failed,
          "direct p50 ms": round(direct.latencyMs.p50),
          "parley p50 ms": round(parley.latencyMs.p50),
          "overhead p50 ms": round(overhead.p50),
          "overhead p90 ms": round(overhead.p90),
          "overhead p99 ms": round(overhead.p99),
          "overhead p50 ratio": round(parley.latencyMs.p50 / direct.latencyMs.p50, 1),
          "floor p50 ms": round(floor.latencyMs.p50),
          "floor p99 ms": round(floor.latencyMs.p99),
          "overhead / floor p50": round(overhead.p50 / floor.latencyMs.p50, 2),
          "overhead / floor p99": round(overhead.p99 / floor.latencyMs.p99, 2),
          ...(floor.errors[0] ? { "floor error": floor.errors[0].slice(0, 160) } : {}),
        },
        raw: { direct, parley, floor },
      });
      panels.push({
        panel: `concurrency ${concurrency}`,
        series: [
          { name: "Parley TTFT", distributionMs: parley.distributionMs },
          { name: "direct TTFT", distributionMs: direct.distributionMs },
          { name: "floor (PG write tx + queue hop + pub/sub hop)", distributionMs: floor.distributionMs },
        ],
      });
      if (concurrency === 1) {
        result.targets.push(
          check("TTFT overhead p50 at concurrency 1", overhead.p50, TARGETS.ttftOverheadP50Ms, "ms"),
          check("TTFT overhead p99 at concurrency 1", overhead.p99, TARGETS.ttftOverheadP99Ms, "ms"),
          check("TTFT overhead p50 at concurrency 1 as a multiple of the floor's p50", overhead.p50 / floor.latencyMs.p50, TARGETS.ttftOverheadPerFloor, "×"),
        );
      }
    }
  } finally {
    await floorWorker.stop();
  }
  result.notes.push(
    "Floor: per request, in sequence, what a durable turn cannot avoid: BEGIN; INSERT one row; COMMIT on a table of the bench database, " +
      "a BullMQ job added (Parley's job options) and taken by a worker in another process, which PUBLISHes its id to a subscriber " +
      "in the load process (one subscription for the run). Timed from BEGIN to the message's arrival; no HTTP, no model call.",
    "Overhead is Parley's TTFT minus the direct call's at the same percentile; overhead / floor is that over the floor's same percentile.",
  );
  result.charts!.push(
    latencyDistributionChart({ file: "ttft-distribution.svg", title: "Time to first token: Parley, direct, and the floor", panels }),
  );
  return result;
}
