import type { BenchContext, ScenarioResult } from "../lib/context.ts";
import { round } from "../lib/stats.ts";
import { measureTurns } from "./throughput.ts";

/**
 * 6. Scaling out: turn throughput (as the throughput scenario measures it) with 1 API + 1 worker process
 * and with 2 API + 2 worker processes, each a Parley of its own started for the case, in the same run.
 */
export async function scalingOut(ctx: BenchContext): Promise<ScenarioResult> {
  const setups = [
    { api: 1, workers: 1 },
    { api: 2, workers: 2 },
  ];
  const result: ScenarioResult = {
    name: "scaling",
    title: "Scaling out: turns/s with 1 API + 1 worker and 2 API + 2 worker processes (concurrency 64)",
    cases: [],
    targets: [],
    notes: [
      "Each setup is a Parley started for it on the run's database, with a Redis prefix of its own; the run's main processes stay idle meanwhile.",
      "On a machine with few cores, more processes share the same cores with Postgres, Redis and the load generator: the ratio says what the code allows there, not what more machines would give.",
    ],
  };
  let base = NaN;
  for (const { api, workers } of setups) {
    const label = `${api}+${workers}`;
    const parley = await ctx.startParley({ api, workers, label: `s${api}x${workers}-` });
    try {
      const { perSecond, cpuMsPerTurn: _, ...measured } = await measureTurns({ ...parley, upstreamPid: ctx.upstreamPid }, {
        scenario: "scaling",
        case: `${api} API + ${workers} worker`,
        requests: ctx.quick ? 128 : 4_000,
      });
      if (Number.isNaN(base)) base = perSecond;
      measured.figures[`turns/s over 1+1`] = round(perSecond / base, 2);
      result.cases.push(measured);
      ctx.log(`scaling ${label}: ${round(perSecond, 1)} turns/s`);
    } finally {
      await parley.stop();
    }
  }
  return result;
}
