import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, inject, it } from "vitest";
import { root } from "../../bench/lib/processes.ts";

const out = mkdtempSync(join(tmpdir(), "parley-bench-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("npm run bench -- --quick", () => {
  it("runs every scenario end to end on tiny sizes and writes the results", async () => {
    // The peer is installed from the registry at bench time; tests never reach the network.
    await promisify(execFile)(process.execPath, ["bench/run.ts", "--quick", "--skip-peer", "--out", out], {
      cwd: root,
      env: { ...process.env, DATABASE_URL: inject("databaseUrl"), REDIS_URL: inject("redisUrl") },
      // Generous: on a loaded machine the quick run has taken 170 s (its processes start slowly, the ttft load alone took 50 s).
      timeout: 330_000,
    });
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.scenarios.map((s: { name: string }) => s.name)).toEqual(["ttft", "throughput", "streams", "history", "peer", "scaling"]);
    expect(results.machine.cores).toBeGreaterThan(0);
    expect(results.machine.postgres).toMatch(/PostgreSQL/);

    const byName = Object.fromEntries(results.scenarios.map((s: { name: string }) => [s.name, s]));
    for (const c of byName.ttft.cases) {
      // The first errors of each target, when some failed: what went wrong is in the message.
      const errors = Object.fromEntries(Object.entries(c.raw ?? {}).map(([k, v]) => [k, (v as { errors?: string[] }).errors?.slice(0, 3)]));
      expect(c.figures.failed, JSON.stringify(errors)).toBe(0);
      expect(c.figures["parley p50 ms"]).toBeGreaterThan(0);
      // The floor ran beside Parley, and the overhead is reported as a multiple of it.
      expect(c.figures["floor p50 ms"]).toBeGreaterThan(0);
      expect(c.figures["overhead / floor p50"]).toEqual(expect.any(Number));
    }
    expect(byName.ttft.targets.map((t: { target: string }) => t.target).join("\n")).toContain("multiple of the floor");
    expect(byName.throughput.cases[0].figures["turns/s"]).toBeGreaterThan(0);
    expect(byName.streams.cases[0].figures["complete and correct"]).toBe(50);
    expect(byName.streams.cases[0].raw.lagOverTime.length).toBeGreaterThan(0);
    expect(byName.history.cases.map((c: { case: string }) => c.case)).toEqual(["10 messages", "100 messages", "1000 messages"]);
    expect(byName.peer.notes.join(" ")).toContain("skipped");
    expect(byName.peer.cases.map((c: { case: string }) => c.case)).toContain("streaming, parley");
    expect(byName.scaling.cases.map((c: { case: string }) => c.case)).toEqual(["1 API + 1 worker", "2 API + 2 worker"]);
    for (const c of byName.scaling.cases) expect(c.figures["turns/s"]).toBeGreaterThan(0);

    // The charts: SVG drawn by Vega with line marks, named in results.json and embedded in RESULTS.md.
    const charts = ["relay-lag-over-time.svg", "stateless-distribution.svg", "ttft-distribution.svg"];
    expect(readdirSync(join(out, "charts")).sort()).toEqual(charts);
    expect(results.scenarios.flatMap((s: { charts?: string[] }) => s.charts ?? []).sort()).toEqual(charts.map((c) => `charts/${c}`));

    const markdown = readFileSync(join(out, "RESULTS.md"), "utf8");
    expect(markdown).toContain("## Targets");
    expect(markdown).toContain("Time to first token overhead");
    for (const chart of charts) {
      const svg = readFileSync(join(out, "charts", chart), "utf8");
      expect(svg).toMatch(/^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
      expect(svg).toContain('class="mark-line');
      expect(svg.trimEnd()).toMatch(/<\/svg>$/);
      expect(markdown).toContain(`](charts/${chart})`);
    }
  }, 340_000);
});
