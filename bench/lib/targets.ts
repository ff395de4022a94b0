import type { TargetCheck } from "./context.ts";
import { round } from "./stats.ts";

/**
 * Every target of issue 15, in one place. Each is a ratio or a comparison measured in the same run,
 * or an absolute bound the issue states; the scenarios check their figures against these.
 */
export const TARGETS = {
  /** Parley's TTFT minus the direct call's, at concurrency 1. */
  ttftOverheadP50Ms: 3,
  ttftOverheadP99Ms: 10,
  /** Parley's TTFT overhead (p50) as a multiple of the floor's p50, measured in the same run. */
  ttftOverheadPerFloor: 2,
  /** Non-streaming 5-token turns per second at concurrency 64. */
  turnsPerSecond: 600,
  /** API + worker + Postgres + Redis CPU per turn. */
  cpuMsPerTurn: 3,
  /** 1,000 concurrent streams. */
  relayLagP99Ms: 50,
  apiPeakRssMb: 250,
  workerPeakRssMb: 250,
  /** Turn latency p50 at 100,000 stored messages over the 10-message case. */
  historyGrowth: 1.2,
  // Stateless chat completions, streaming and not: throughput ≥ the peer's and added p50 ≤ the peer's (no constant).
} as const;

/** A target as the issue states it, the measured figure, and by how much it was missed. */
export function check(target: string, measured: number, limit: number, unit: string, higherIsBetter = false): TargetCheck {
  const met = Number.isFinite(measured) ? (higherIsBetter ? measured >= limit : measured <= limit) : false;
  return {
    target: `${target} ${higherIsBetter ? "≥" : "≤"} ${round(limit)} ${unit}`,
    measured: `${round(measured)} ${unit}`,
    met,
    ...(met ? {} : { by: `${round(Math.abs(measured - limit))} ${unit} (${round(measured / limit, 2)}× the target)` }),
  };
}
