export interface Summary {
  n: number;
  min: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** Nearest-rank percentiles: no interpolation, every figure is a measured value. */
export function summarize(values: number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
  const mean = sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1);
  return { n: sorted.length, min: sorted[0] ?? NaN, p50: at(50), p90: at(90), p99: at(99), max: sorted.at(-1) ?? NaN, mean };
}

export const round = (x: number, digits = 2) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);

/** The distribution as nearest-rank percentiles p0, p1, …, p100 (101 measured values; empty when none). */
export function percentiles(values: number[]): number[] {
  if (values.length === 0) return [];
  const sorted = [...values].sort((a, b) => a - b);
  return Array.from({ length: 101 }, (_, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!);
}

export interface TimeBin {
  /** Start of the bin, seconds since the load began. */
  atS: number;
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** `[atMs, value]` samples summarized per `binMs` of time: how a figure moved during the run. */
export function overTime(samples: [number, number][], binMs: number): TimeBin[] {
  const bins = new Map<number, number[]>();
  for (const [at, value] of samples) {
    const bin = Math.floor(at / binMs);
    let values = bins.get(bin);
    if (!values) bins.set(bin, (values = []));
    values.push(value);
  }
  return [...bins.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([bin, values]) => {
      const s = summarize(values);
      return { atS: round((bin * binMs) / 1000, 3), n: s.n, p50: round(s.p50), p99: round(s.p99), max: round(s.max) };
    });
}
