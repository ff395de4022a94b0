import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createConversations, type BenchContext, type ScenarioResult } from "../lib/context.ts";
import { runLoadProcess } from "../lib/processes.ts";
import { round } from "../lib/stats.ts";
import { measureTurns } from "./throughput.ts";

/**
 * What traces cost: the same Parley (1 API, 1 worker) with tracing off (no OTLP endpoint, the default) and on
 * (exporting to a sink collector in this process that answers every export at once): CPU per turn from the
 * throughput load, and TTFT of streamed turns at concurrency 1. Run off, on, on, off, so a machine whose load drifts
 * during the run weighs on both alike; on − off compares the means.
 */
export async function tracingCost(ctx: BenchContext): Promise<ScenarioResult> {
  const sink = await startSinkCollector();
  const result: ScenarioResult = { name: "traces", title: "Cost of traces (OTLP export on vs. off)", cases: [], targets: [], notes: [] };
  const measured: Record<"on" | "off", { cpuMsPerTurn: number; ttftP50: number; ttftP99: number }[]> = { on: [], off: [] };
  try {
    for (const [round_, mode] of (["off", "on", "on", "off"] as const).entries()) {
      const env: Record<string, string> = mode === "on" ? { OTEL_EXPORTER_OTLP_ENDPOINT: sink.url, OTEL_BSP_SCHEDULE_DELAY: "1000" } : {};
      const parley = await ctx.startParley({ api: 1, workers: 1, label: `traces-${mode}-${round_}`, env });
      try {
        const exportsBefore = sink.spans;
        const turns = await measureTurns({ ...parley, upstreamPid: ctx.upstreamPid }, { scenario: "traces", case: `${round_ + 1}. tracing ${mode}`, requests: ctx.quick ? 128 : 2_000 });
        const model = "bench-0-0-8";
        const requests = ctx.quick ? 20 : 300;
        const conversations = await createConversations(parley, 1, model);
        const ttft = await runLoadProcess({ kind: "ttft", target: "parley", urls: parley.apiUrls, model, conversations, concurrency: 1, requests, deadlineMs: 120_000 });
        measured[mode].push({ cpuMsPerTurn: turns.cpuMsPerTurn, ttftP50: ttft.latencyMs.p50, ttftP99: ttft.latencyMs.p99 });
        // Spans still batched are sent within OTEL_BSP_SCHEDULE_DELAY: give them that before counting.
        await new Promise((r) => setTimeout(r, 1_500));
        result.cases.push({
          ...turns,
          figures: {
            ...turns.figures,
            "TTFT p50 ms (c=1)": round(ttft.latencyMs.p50),
            "TTFT p99 ms (c=1)": round(ttft.latencyMs.p99),
            "TTFT failed": ttft.failed,
            "spans exported / turn": round((sink.spans - exportsBefore) / (Number(turns.figures.turns) + ttft.completed), 1),
          },
          raw: { turns: turns.raw, ttft },
        });
      } finally {
        await parley.stop();
      }
    }
  } finally {
    await sink.close();
  }
  const meanOf = (mode: "on" | "off") => {
    const runs = measured[mode];
    const mean = (k: keyof (typeof runs)[number]) => runs.reduce((sum, r) => sum + r[k], 0) / runs.length;
    return { cpuMsPerTurn: mean("cpuMsPerTurn"), ttftP50: mean("ttftP50"), ttftP99: mean("ttftP99") };
  };
  const on = meanOf("on");
  const off = meanOf("off");
  result.cases.push({
    scenario: "traces",
    case: "on − off (means)",
    figures: {
      "all CPU ms / turn": round(on.cpuMsPerTurn - off.cpuMsPerTurn, 3),
      "TTFT p50 ms (c=1)": round(on.ttftP50 - off.ttftP50),
      "TTFT p99 ms (c=1)": round(on.ttftP99 - off.ttftP99),
    },
  });
  result.notes.push(
    "Off is the default (no OTEL_EXPORTER_OTLP_ENDPOINT): the SDK is not loaded and no span is made. On: every span recorded " +
      "(sampler ratio 1) and exported over OTLP/HTTP JSON in batches every second to a sink in the bench process, which answers at once.",
    "Two runs of each on a shared machine (off, on, on, off): differences within the spread of the two runs of one mode are noise.",
  );
  return result;
}

/** A collector that takes OTLP/HTTP exports and only counts their spans. */
async function startSinkCollector() {
  let spans = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      spans += Buffer.concat(chunks).toString("utf8").split('"spanId"').length - 1;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get spans() {
      return spans;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
