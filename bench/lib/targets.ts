import type { TargetCheck } from "./context.ts";
import { round } from "./stats.ts";

/** A target as the issue states it, the measured figure, and by how much it was missed. */
export function check(target: string, measured: number, limit: number, unit: string, higherIsBetter = false): TargetCheck {
  const met = higherIsBetter ? measured >= limit : measured <= limit;
  return {
    target: `${target} ${higherIsBetter ? "≥" : "≤"} ${round(limit)} ${unit}`,
    measured: `${round(measured)} ${unit}`,
    met,
    ...(met ? {} : { by: `${round(Math.abs(measured - limit))} ${unit} (${round(measured / limit, 2)}× the target)` }),
  };
}
