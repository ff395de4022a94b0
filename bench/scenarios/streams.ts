import { lagOverTimeChart } from "../lib/charts.ts";
import { createConversations, type BenchContext, type ScenarioResult } from "../lib/context.ts";
import { startCpuShare } from "../lib/machine-share.ts";
import { peakRssMb } from "../lib/proc.ts";
import { runLoadProcess } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { check, TARGETS } from "../lib/targets.ts";

/** 3. Many replies streaming at once at 20 tokens/s each: correctness, relay lag, memory. */
export async function manyStreams(ctx: BenchContext): Promise<ScenarioResult> {
  const streams = ctx.quick ? 50 : 1_000;
  const tokens = ctx.quick ? 10 : 40;
  const conversations = await createConversations(ctx, streams, `bench-0-50-${tokens}-stamp`);
  const cpu = startCpuShare(ctx);
  const load = await runLoadProcess({ kind: "streams", urls: ctx.apiUrls, conversations, tokens, deadlineMs: 120_000 });
  // Per relayed token: every stream's deltas (its end events ride along).
  const share = cpu.finish({ unit: "token", count: Math.max(1, (load.completed + load.failed) * tokens), seconds: load.seconds, loadCpuSeconds: load.cpuSeconds });
  const apiRss = Math.max(...ctx.apiPids.map(peakRssMb));
  const workerRss = Math.max(...ctx.workerPids.map(peakRssMb));
  return {
    name: "streams",
    title: `Many streams: ${streams} replies at once, 20 tokens/s, ${tokens} tokens each`,
    cases: [
      {
        scenario: "streams",
        case: `${streams} streams`,
        figures: {
          streams,
          "complete and correct": load.correct ?? 0,
          failed: load.failed,
          "restarted (message.reset)": load.resets ?? 0,
          "relay lag p50 ms": round(load.lagMs?.p50 ?? NaN),
          "relay lag p99 ms": round(load.lagMs?.p99 ?? NaN),
          "API peak RSS MB": round(apiRss, 1),
          "worker peak RSS MB": round(workerRss, 1),
          ...Object.fromEntries(
            Object.entries(share.figures).map(([k, v]) => (k.endsWith(" ms / token") ? [k.replace(" ms / token", " µs / token"), round(v * 1000, 1)] : [k, v])),
          ),
        },
        raw: load,
      },
    ],
    targets: [
      check("Streams complete and correct", load.correct ?? 0, streams, "streams", true),
      check(`Relay lag p99 with ${streams} streams`, load.lagMs?.p99 ?? NaN, TARGETS.relayLagP99Ms, "ms"),
      check("API peak RSS", apiRss, TARGETS.apiPeakRssMb, "MB"),
      check("Worker peak RSS", workerRss, TARGETS.workerPeakRssMb, "MB"),
    ],
    notes: [
      "Relay lag: the fake upstream stamps each token with its send time; the client subtracts it on receipt (one clock).",
      "Peak RSS: the largest VmHWM among the API (worker) processes, over the whole run so far.",
      "CPU per token: each process's CPU over the run over the tokens relayed; the load client and the fake upstream share the machine's cores with Parley (not in \"all\"). Cores busy: everything's CPU per token × tokens/s.",
    ],
    charts: [
      lagOverTimeChart({
        file: "relay-lag-over-time.svg",
        title: `Relay lag over time, ${streams} streams at 20 tokens/s`,
        bins: load.lagOverTime ?? [],
        targetP99Ms: TARGETS.relayLagP99Ms,
      }),
    ],
  };
}
