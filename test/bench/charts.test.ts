import { describe, expect, it } from "vitest";
import { lagOverTimeChart, latencyDistributionChart, renderSvg } from "../../bench/lib/charts.ts";
import { overTime, percentiles } from "../../bench/lib/stats.ts";

describe("bench statistics for charts", () => {
  it("gives p0…p100 as measured values (nearest rank)", () => {
    const p = percentiles(Array.from({ length: 200 }, (_, i) => 200 - i));
    expect(p).toHaveLength(101);
    expect([p[0], p[50], p[99], p[100]]).toEqual([1, 100, 198, 200]);
    expect(percentiles([])).toEqual([]);
  });

  it("summarizes timed samples per bin, in time order", () => {
    const bins = overTime([[620, 9], [10, 1], [240, 3], [260, 5]], 250);
    expect(bins).toEqual([
      { atS: 0, n: 2, p50: 1, p99: 3, max: 3 },
      { atS: 0.25, n: 1, p50: 5, p99: 5, max: 5 },
      { atS: 0.5, n: 1, p50: 9, p99: 9, max: 9 },
    ]);
  });
});

describe("bench charts", () => {
  it("draws latency distributions as SVG, a line per series in each panel", async () => {
    const chart = latencyDistributionChart({
      file: "d.svg",
      title: "Distributions",
      panels: ["concurrency 1", "concurrency 16"].map((panel, k) => ({
        panel,
        series: [
          { name: "Parley TTFT", distributionMs: percentiles([5, 6, 7, 30].map((x) => x * (k + 1))) },
          { name: "floor", distributionMs: percentiles([2, 2.5, 3, 9]) },
        ],
      })),
    });
    const svg = await renderSvg(chart.spec);
    expect(svg).toMatch(/^<svg /);
    expect(svg.match(/class="mark-line[^"]*"/g)?.length).toBeGreaterThanOrEqual(2);
    for (const text of ["concurrency 1", "concurrency 16", "Parley TTFT", "floor", "Distributions"]) expect(svg).toContain(`>${text}<`);
  });

  it("draws relay lag over time with the target as a rule", async () => {
    const bins = overTime(Array.from({ length: 400 }, (_, i) => [i * 10, 1 + (i % 37)] as [number, number]), 250);
    const svg = await renderSvg(lagOverTimeChart({ file: "l.svg", title: "Lag", bins, targetP99Ms: 50 }).spec);
    expect(svg).toContain('class="mark-rule');
    expect(svg).toContain(">target p99 50 ms<");
    for (const stat of ["p50", "p99", "max"]) expect(svg).toContain(`>${stat}<`);
  });
});
