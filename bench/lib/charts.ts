import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import type { TimeBin } from "./stats.ts";

/** A chart of a scenario: a Vega-Lite spec with its data inline, drawn to `charts/<file>` (SVG). */
export interface Chart {
  file: string;
  title: string;
  spec: TopLevelSpec;
}

const SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json";

/** Draws a chart as SVG with Vega (headless: no canvas, no fonts measured). */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/**
 * Latency distributions as cumulative curves (x: latency, log; y: share of requests at or under it),
 * one panel per `panel`, one line per series; a series is its percentiles p0…p100.
 */
export function latencyDistributionChart(opts: {
  file: string;
  title: string;
  panels: { panel: string; series: { name: string; distributionMs: number[] }[] }[];
}): Chart {
  const values = opts.panels.flatMap(({ panel, series }) =>
    series.flatMap(({ name, distributionMs }) =>
      // log scale: a 0 ms sample (never seen, but a clock can round) is drawn at 1 µs.
      distributionMs.map((ms, p) => ({ panel, series: name, ms: Math.max(ms, 0.001), share: p / 100 })),
    ),
  );
  return {
    file: opts.file,
    title: opts.title,
    spec: {
      $schema: SCHEMA,
      title: opts.title,
      data: { values },
      facet: { column: { field: "panel", type: "nominal", title: null, sort: opts.panels.map((p) => p.panel) } },
      spec: {
        width: 260,
        height: 200,
        mark: { type: "line", interpolate: "step-after", strokeWidth: 1.5 },
        encoding: {
          x: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "latency (ms, log scale)" },
          y: { field: "share", type: "quantitative", axis: { format: "%" }, title: "requests at or under" },
          color: { field: "series", type: "nominal", title: null, sort: opts.panels[0]?.series.map((s) => s.name), legend: { labelLimit: 320 } },
        },
      },
      resolve: { scale: { x: "independent" } },
    } as TopLevelSpec,
  };
}

/** Relay lag over the run: p50, p99 and the maximum per time bin, with the p99 target as a rule. */
export function lagOverTimeChart(opts: { file: string; title: string; bins: TimeBin[]; targetP99Ms: number }): Chart {
  const values = opts.bins.flatMap((b) =>
    (["p50", "p99", "max"] as const).map((stat) => ({ atS: b.atS, stat, ms: Math.max(b[stat], 0.001) })),
  );
  return {
    file: opts.file,
    title: opts.title,
    spec: {
      $schema: SCHEMA,
      title: opts.title,
      width: 560,
      height: 240,
      layer: [
        {
          data: { values },
          mark: { type: "line", strokeWidth: 1.5 },
          encoding: {
            x: { field: "atS", type: "quantitative", title: "time since the streams began (s)" },
            y: { field: "ms", type: "quantitative", scale: { type: "log" }, title: "relay lag (ms, log scale)" },
            color: { field: "stat", type: "nominal", title: "per 250 ms", sort: ["p50", "p99", "max"] },
          },
        },
        {
          data: { values: [{ ms: opts.targetP99Ms, label: `target p99 ${opts.targetP99Ms} ms` }] },
          layer: [
            { mark: { type: "rule", strokeDash: [4, 4], color: "gray" }, encoding: { y: { field: "ms", type: "quantitative" } } },
            {
              mark: { type: "text", align: "left", dx: 4, dy: -6, color: "gray" },
              encoding: { y: { field: "ms", type: "quantitative" }, x: { datum: 0 }, text: { field: "label" } },
            },
          ],
        },
      ],
    } as TopLevelSpec,
  };
}
