import { cpus } from "node:os";
import { pidsNamed, totalCpuSeconds } from "./proc.ts";
import { round } from "./stats.ts";

/**
 * CPU spent over a measured run, per unit of work (a turn, a token): Parley's four groups of processes, and the
 * bench's own processes beside them. The load client and the fake upstream run on the same cores as Parley, so
 * their share, and how many of the machine's cores everything together kept busy, tell whether a figure is
 * Parley's limit or the machine's.
 */
export function startCpuShare(procs: { apiPids: number[]; workerPids: number[]; upstreamPid?: number | undefined }) {
  const groups = {
    api: () => procs.apiPids,
    worker: () => procs.workerPids,
    postgres: () => pidsNamed("postgres"),
    redis: () => pidsNamed("redis-server"),
  };
  const before = Object.fromEntries(Object.entries(groups).map(([k, pids]) => [k, totalCpuSeconds(pids())]));
  const upstreamBefore = procs.upstreamPid ? totalCpuSeconds([procs.upstreamPid]) : NaN;
  return {
    /** CPU ms per unit, for `count` units done in `seconds`; `loadCpuSeconds` is the load client's own. */
    finish(opts: { unit: string; count: number; seconds: number; loadCpuSeconds: number | undefined }) {
      const perUnit = (spent: number) => (spent / opts.count) * 1000;
      const parley: Record<string, number> = {};
      for (const [k, pids] of Object.entries(groups)) parley[k] = perUnit(totalCpuSeconds(pids()) - (before[k] ?? 0));
      const parleyMs = Object.values(parley).reduce((a, b) => a + b, 0);
      const loadMs = perUnit(opts.loadCpuSeconds ?? NaN);
      const upstreamMs = procs.upstreamPid ? perUnit(totalCpuSeconds([procs.upstreamPid]) - upstreamBefore) : NaN;
      const coresBusy = ((parleyMs + loadMs + upstreamMs) * (opts.count / opts.seconds)) / 1000;
      return {
        parleyMs,
        figures: {
          ...Object.fromEntries(Object.entries(parley).map(([k, ms]) => [`${k} CPU ms / ${opts.unit}`, round(ms, 3)])),
          [`all CPU ms / ${opts.unit}`]: round(parleyMs, 3),
          [`load client CPU ms / ${opts.unit}`]: round(loadMs, 3),
          [`fake upstream CPU ms / ${opts.unit}`]: round(upstreamMs, 3),
          [`cores busy (of ${cpus().length})`]: round(coresBusy, 2),
        },
      };
    },
  };
}
