import { execFile } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { latencyDistributionChart } from "../lib/charts.ts";
import type { BenchContext, ScenarioResult, TargetCheck } from "../lib/context.ts";
import { runLoadProcess, startChild, type Child } from "../lib/processes.ts";
import type { LoadResult } from "../lib/load-client.ts";
import { round } from "../lib/stats.ts";
import { freePort } from "../../test/support/processes.ts";
import { check } from "../lib/targets.ts";

const PEER = "@portkey-ai/gateway@1.15.2";
/**
 * The gateway asks for @hono/node-server ^1.3.3, which now installs 1.19: from 1.14.2 on, its streaming
 * path fails every request ("Something went wrong"; the log says `TypeError: immutable` from
 * `Headers.append` on the upstream's response). 1.14.1 is the last that streams (bisected: 1.14.1 streams,
 * 1.14.2 … 1.19.19 fail), so the peer's own install pins it.
 */
const PEER_OVERRIDES = { "@hono/node-server": "1.14.1" };

/** Installs the peer into a temporary folder (not a project dependency) and starts it. */
async function startPeer(): Promise<Child> {
  // The pins are in the folder's name: a folder installed without them is not reused.
  const dir = join(tmpdir(), `parley-bench-portkey-1.15.2-node-server-${PEER_OVERRIDES["@hono/node-server"]}`);
  const entry = join(dir, "node_modules/@portkey-ai/gateway/build/start-server.js");
  if (!existsSync(entry)) {
    mkdirSync(dir, { recursive: true });
    const [name, version] = [PEER.slice(0, PEER.lastIndexOf("@")), PEER.slice(PEER.lastIndexOf("@") + 1)];
    writeFileSync(
      join(dir, "package.json"),
      JSON.stringify({ name: "parley-bench-peer", private: true, dependencies: { [name]: version }, overrides: PEER_OVERRIDES }, null, 2),
    );
    await promisify(execFile)("npm", ["install", "--no-audit", "--no-fund"], { cwd: dir, timeout: 300_000 });
  }
  const port = await freePort();
  const child = await startChild("portkey", [entry, `--port=${port}`, "--headless"], { ready: "Ready for connections" });
  return Object.assign(child, { url: `http://127.0.0.1:${port}/v1` });
}

/** 5. The stateless chat-completions API, through Parley vs. Portkey's open-source gateway vs. direct. */
export async function peerSideBySide(ctx: BenchContext & { skipPeer: boolean }): Promise<ScenarioResult> {
  const model = "bench-0-0-8";
  const result: ScenarioResult = {
    name: "peer",
    title: `Stateless /v1/chat/completions: Parley vs. ${PEER} vs. direct (same upstream, same run)`,
    cases: [],
    targets: [],
    notes: [`The peer runs with @hono/node-server pinned to ${PEER_OVERRIDES["@hono/node-server"]} in its own install (later versions fail its streaming path).`],
    charts: [],
  };
  const panels: Parameters<typeof latencyDistributionChart>[0]["panels"] = [];
  let peer: (Child & { url: string }) | null = null;
  let peerError: string | null = ctx.skipPeer ? "skipped (--skip-peer)" : null;
  if (!ctx.skipPeer) {
    try {
      peer = (await startPeer()) as Child & { url: string };
    } catch (err) {
      peerError = `could not install or start: ${String(err).slice(0, 300)}`;
    }
  }
  if (peerError) result.notes.push(`Peer: ${peerError}`);
  const peerHeaders = { "x-portkey-provider": "openai", "x-portkey-custom-host": ctx.upstreamUrl };

  try {
    for (const stream of [false, true]) {
      const latencyRequests = ctx.quick ? 10 : 300;
      const loadRequests = ctx.quick ? 64 : 3_000;
      const targets = {
        direct: { urls: [ctx.upstreamUrl], headers: {} },
        parley: { urls: ctx.apiUrls, headers: {} },
        ...(peer ? { portkey: { urls: [peer.url], headers: peerHeaders } } : {}),
      };
      const latency: Record<string, LoadResult> = {};
      const load: Record<string, LoadResult> = {};
      for (const [name, t] of Object.entries(targets)) {
        latency[name] = await runLoadProcess({ kind: "stateless", ...t, model, stream, concurrency: 1, requests: latencyRequests, deadlineMs: 60_000 });
        load[name] = await runLoadProcess({ kind: "stateless", ...t, model, stream, concurrency: 32, requests: loadRequests, deadlineMs: 60_000 });
      }
      const mode = stream ? "streaming" : "non-streaming";
      panels.push({
        panel: `${mode}, concurrency 1`,
        series: Object.keys(targets)
          .filter((name) => latency[name]!.completed > 0)
          .map((name) => ({ name, distributionMs: latency[name]!.distributionMs })),
      });
      for (const name of Object.keys(targets)) {
        const l = latency[name]!;
        const t = load[name]!;
        const failedAll = t.completed === 0;
        result.cases.push({
          scenario: "peer",
          case: `${mode}, ${name}`,
          figures: {
            "req/s at c=32": failedAll ? "failed" : round(t.perSecond, 1),
            "p50 ms at c=1": failedAll ? "failed" : round(l.latencyMs.p50),
            "added p50 ms": name === "direct" || failedAll ? "-" : round(l.latencyMs.p50 - latency.direct!.latencyMs.p50),
            failed: l.failed + t.failed,
            ...(t.errors[0] ? { "first error": t.errors[0].slice(0, 160) } : {}),
          },
          raw: { latency: l, load: t },
        });
      }
      const p = load.portkey;
      if (p && p.completed > 0) {
        const parley = load.parley!;
        const added = (n: string) => latency[n]!.latencyMs.p50 - latency.direct!.latencyMs.p50;
        result.targets.push(
          check(`Stateless ${mode} throughput: the peer's, so`, parley.perSecond, p.perSecond, "req/s", true),
          check(`Stateless ${mode} added p50 latency: the peer's, so`, added("parley"), added("portkey"), "ms"),
        );
      } else {
        const why = p ? `the peer failed every ${mode} request: ${p.errors[0] ?? "no detail"}` : peerError ?? "not run";
        result.targets.push({ target: `Stateless ${mode} vs. peer`, measured: `not comparable: ${why.slice(0, 200)}`, met: null } as TargetCheck);
      }
    }
  } finally {
    await peer?.stop();
  }
  result.charts!.push(
    latencyDistributionChart({ file: "stateless-distribution.svg", title: "Stateless chat completions: Parley, the peer, direct", panels }),
  );
  return result;
}
