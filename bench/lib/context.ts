import type postgres from "postgres";
import type { Chart } from "./charts.ts";
import type { ParleyProcesses } from "./parley.ts";

/** What every scenario gets: the running Parley, the fake upstream, and the sizes to use. */
export interface BenchContext {
  quick: boolean;
  /** Parley API base URLs (`…/v1`), one per API process; load is spread over them. */
  apiUrls: string[];
  apiPids: number[];
  workerPids: number[];
  /** The fake upstream's base URL (`…/v1`). */
  upstreamUrl: string;
  /** The fake upstream's process, whose CPU the scenarios report beside Parley's. */
  upstreamPid: number;
  /** Parley's database, for seeding long conversations (and the floor's table). */
  sql: postgres.Sql;
  databaseUrl: string;
  redisUrl: string;
  /** The run's Redis prefix: Parley's keys, and anything else the bench keeps in Redis, start with it. */
  prefix: string;
  /** Starts another Parley (`api` API and `workers` worker processes) on this run's database, under a Redis prefix of its own. */
  startParley(opts: { api: number; workers: number; label: string; env?: Record<string, string> }): Promise<ParleyProcesses>;
  log(line: string): void;
}

/** A row of the results: one measured case with its figures. */
export interface CaseResult {
  scenario: string;
  case: string;
  figures: Record<string, number | string>;
  raw?: unknown;
}

export interface TargetCheck {
  target: string;
  measured: string;
  met: boolean | null;
  /** How far from the target, when missed. */
  by?: string;
}

export interface ScenarioResult {
  name: string;
  title: string;
  cases: CaseResult[];
  targets: TargetCheck[];
  notes: string[];
  /** Drawn by run.ts into `charts/<file>` beside RESULTS.md, which embeds them after the scenario's table. */
  charts?: Chart[];
}

/** Creates `n` conversations with `model` through the API, spread over the API processes. */
export async function createConversations(ctx: Pick<BenchContext, "apiUrls">, n: number, model: string): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 0; start < n; start += 50) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(50, n - start) }, async (_, i) => {
        const url = ctx.apiUrls[(start + i) % ctx.apiUrls.length];
        const res = await fetch(`${url}/conversations`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${process.env.PARLEY_API_KEY}` },
          body: JSON.stringify({ model, system: "You are a helpful travel guide." }),
        });
        if (res.status !== 201) throw new Error(`create conversation: ${res.status} ${await res.text()}`);
        return ((await res.json()) as { id: string }).id;
      }),
    );
    ids.push(...batch);
  }
  return ids;
}
