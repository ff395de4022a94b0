import { createConversations, type BenchContext, type CaseResult, type ScenarioResult } from "../lib/context.ts";
import { startCpuShare } from "../lib/machine-share.ts";
import { runLoadProcess } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { check, TARGETS } from "../lib/targets.ts";

const CONCURRENCY = 64;

/**
 * Completed non-streaming 5-token turns per second at concurrency 64 through the given Parley processes,
 * and the CPU each group of processes spent per turn meanwhile.
 */
export async function measureTurns(
  parley: { apiUrls: string[]; apiPids: number[]; workerPids: number[]; upstreamPid?: number },
  opts: { scenario: string; case: string; requests: number },
): Promise<CaseResult & { perSecond: number; cpuMsPerTurn: number }> {
  const conversations = await createConversations(parley, CONCURRENCY, "bench-0-0-5");
  const cpu = startCpuShare(parley);
  const load = await runLoadProcess({ kind: "turns", urls: parley.apiUrls, conversations, requests: opts.requests, deadlineMs: 120_000 });
  const share = cpu.finish({ unit: "turn", count: load.completed, seconds: load.seconds, loadCpuSeconds: load.cpuSeconds });
  const cpuMsPerTurn = share.parleyMs;
  return {
    scenario: opts.scenario,
    case: opts.case,
    figures: {
      turns: load.completed,
      failed: load.failed,
      "turns/s": round(load.perSecond, 1),
      "latency p50 ms": round(load.latencyMs.p50),
      "latency p99 ms": round(load.latencyMs.p99),
      ...share.figures,
    },
    raw: load,
    perSecond: load.perSecond,
    cpuMsPerTurn,
  };
}

/** 2. Completed non-streaming turns per second at concurrency 64, and the CPU each process spent on them. */
export async function turnThroughput(ctx: BenchContext): Promise<ScenarioResult> {
  const { perSecond, cpuMsPerTurn, ...measured } = await measureTurns(ctx, {
    scenario: "throughput",
    case: `concurrency ${CONCURRENCY}`,
    requests: ctx.quick ? 128 : 6_000,
  });
  return {
    name: "throughput",
    title: `Turn throughput (non-streaming, 5-token replies, upstream without delay, concurrency ${CONCURRENCY})`,
    cases: [measured],
    targets: [
      check(`Turn throughput at concurrency ${CONCURRENCY}`, perSecond, TARGETS.turnsPerSecond, "turns/s", true),
      check("CPU per turn (API, worker, Postgres, Redis)", cpuMsPerTurn, TARGETS.cpuMsPerTurn, "ms"),
    ],
    notes: [
      "Postgres and Redis CPU is every process of that name on the machine (the tests' servers are shared): an upper bound.",
      "The load client and the fake upstream share the machine's cores with Parley; their CPU is not in \"all\". Cores busy: everything's CPU per turn × turns/s.",
    ],
  };
}
