import { createConversations, type BenchContext, type ScenarioResult } from "../lib/context.ts";
import { pidsNamed, totalCpuSeconds } from "../lib/proc.ts";
import { runLoadProcess } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { check } from "../lib/targets.ts";

/** 2. Completed non-streaming turns per second at concurrency 64, and the CPU each process spent on them. */
export async function turnThroughput(ctx: BenchContext): Promise<ScenarioResult> {
  const concurrency = 64;
  const requests = ctx.quick ? 128 : 6_000;
  const conversations = await createConversations(ctx, concurrency, "bench-0-0-5");
  const groups = {
    api: () => ctx.apiPids,
    worker: () => ctx.workerPids,
    postgres: () => pidsNamed("postgres"),
    redis: () => pidsNamed("redis-server"),
  };
  const before = Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, totalCpuSeconds(pids())]));
  const load = await runLoadProcess({ kind: "turns", urls: ctx.apiUrls, conversations, requests, deadlineMs: 120_000 });
  const cpuPer1000: Record<string, number> = {};
  for (const [k, pids] of Object.entries(groups)) {
    cpuPer1000[`${k} CPU s / 1000 turns`] = round(((totalCpuSeconds(pids()) - (before[k] ?? 0)) / load.completed) * 1000, 3);
  }
  return {
    name: "throughput",
    title: "Turn throughput (non-streaming, 5-token replies, upstream without delay, concurrency 64)",
    cases: [
      {
        scenario: "throughput",
        case: "concurrency 64",
        figures: {
          turns: load.completed,
          failed: load.failed,
          "turns/s": round(load.perSecond, 1),
          "latency p50 ms": round(load.latencyMs.p50),
          "latency p99 ms": round(load.latencyMs.p99),
          ...cpuPer1000,
        },
        raw: load,
      },
    ],
    targets: [check("Turn throughput", load.perSecond, 1000, "turns/s", true)],
    notes: ["Postgres and Redis CPU is every process of that name on the machine (the tests' servers are shared)."],
  };
}
