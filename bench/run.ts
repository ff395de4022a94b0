import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, totalmem, type } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import postgres from "postgres";
import { connectDatabase } from "../src/db/client.ts";
import { migrateDatabase } from "../src/db/migrate.ts";
import { createApiKey } from "../src/domain/api-keys.ts";
import { PARLEY_NODE_FLAGS } from "../src/runtime-flags.ts";
import { buildDist } from "../scripts/build.ts";
import type { BenchContext, ScenarioResult } from "./lib/context.ts";
import { renderSvg } from "./lib/charts.ts";
import { startParley, type ParleyProcesses } from "./lib/parley.ts";
import { killAllChildren, root, startChild, type Child } from "./lib/processes.ts";
import { summarizeProfile } from "./lib/profile-summary.ts";
import { renderMarkdown, renderProfiles, type MachineInfo } from "./lib/report.ts";
import { historyGrowth } from "./scenarios/history.ts";
import { peerSideBySide } from "./scenarios/peer.ts";
import { scalingOut } from "./scenarios/scaling.ts";
import { manyStreams } from "./scenarios/streams.ts";
import { turnThroughput } from "./scenarios/throughput.ts";
import { tracingCost } from "./scenarios/traces.ts";
import { ttftOverhead } from "./scenarios/ttft.ts";

/**
 * `npm run bench [-- --quick] [--only ttft,throughput,streams,history,peer,scaling,traces]
 *  [--api N] [--workers N] [--skip-peer] [--cpu-prof] [--out DIR]`
 *
 * Starts a fake upstream, Parley (N API and M worker processes) and a load
 * generator, each a process of its own, on loopback; runs the scenarios; and
 * writes RESULTS.md, results.json and the charts (charts/*.svg) to bench/ unless --out says otherwise.
 */

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    only: { type: "string" },
    api: { type: "string", default: "1" },
    workers: { type: "string", default: "1" },
    "skip-peer": { type: "boolean", default: false },
    "cpu-prof": { type: "boolean", default: false },
    out: { type: "string", default: join(root, "bench") },
  },
});

const scenarios = {
  ttft: ttftOverhead,
  throughput: turnThroughput,
  streams: manyStreams,
  history: historyGrowth,
  peer: peerSideBySide,
  scaling: scalingOut,
  traces: tracingCost,
} as const;
type ScenarioName = keyof typeof scenarios;
/** Run only when named (`--only traces`): it measures an option, not Parley as deployed by default. */
const optIn: ScenarioName[] = ["traces"];
const chosen = (args.only?.split(",") ?? Object.keys(scenarios).filter((s) => !optIn.includes(s as ScenarioName))) as ScenarioName[];
for (const name of chosen) if (!(name in scenarios)) throw new Error(`unknown scenario '${name}'; choose from ${Object.keys(scenarios).join(", ")}`);

const serverUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const databaseUrl = Object.assign(new URL(serverUrl), { pathname: `/parley_bench_${randomBytes(4).toString("hex")}` }).toString();
const prefix = `parley-bench-${randomBytes(4).toString("hex")}`;
const profileDir = join(args.out, "profiles");
const log = (line: string) => console.error(`[bench] ${line}`);

async function machine(sql: postgres.Sql): Promise<MachineInfo> {
  const [pg] = await sql<{ version: string }[]>`select version()`;
  const redis = new Redis(redisUrl);
  const info = await redis.info("server");
  redis.disconnect();
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: pg?.version.split(" on ")[0] ?? "unknown",
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown",
    os: type(),
  };
}

const children: Child[] = [];
const parleys: ParleyProcesses[] = [];
let sql: postgres.Sql | null = null;
// Stopped from outside (a test's timeout, Ctrl-C), the run would leave its children running, holding CPU and
// Postgres connections: they are killed at once, the run's database and keys removed, then the run exits.
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    killAllChildren();
    const exit = () => process.exit(signal === "SIGINT" ? 130 : 143);
    setTimeout(exit, 5_000).unref();
    void removeRunData().finally(exit);
  });
}
try {
  // Parley's processes run dist/, as production does (`npm start`), built from the src/ being measured.
  await buildDist();
  await migrateDatabase(databaseUrl);
  sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  // One key for the whole run; the load clients (child processes) inherit it through the environment.
  const keyDb = connectDatabase(databaseUrl, { max: 1 });
  process.env.PARLEY_API_KEY = (await createApiKey(keyDb.db, { tenant: "bench", name: "bench run" })).key;
  await keyDb.close();

  const upstream = await startChild("upstream", ["bench/lib/fake-upstream-server.ts"], { ready: /"baseURL"/ });
  children.push(upstream);
  const upstreamUrl = (JSON.parse(upstream.output().trim().split("\n")[0]!) as { baseURL: string }).baseURL;

  const env = {
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    LOG_LEVEL: "info",
    HOST: "127.0.0.1",
    UPSTREAMS: JSON.stringify([{ name: "bench", base_url: upstreamUrl, model_prefix: "bench-", strip_prefix: false }]),
    // One tenant drives all the load: its limits must not be what is measured.
    RATE_LIMIT_REQUESTS: "100000000",
    MAX_CONCURRENT_REPLIES: "100000",
  };
  if (args["cpu-prof"]) {
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
  }
  const nodeFlags = (role: string) => [
    ...PARLEY_NODE_FLAGS,
    ...(args["cpu-prof"] ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=${role}-\${pid}.cpuprofile`] : []),
  ];
  // Workers get enough concurrency for every reply of the many-streams case at once between them (startParley).
  const main = await startParley({ api: Number(args.api), workers: Number(args.workers), env, nodeFlags });
  parleys.push(main);

  const ctx: BenchContext & { skipPeer: boolean } = {
    quick: args.quick,
    apiUrls: main.apiUrls,
    apiPids: main.apiPids,
    workerPids: main.workerPids,
    upstreamUrl,
    upstreamPid: upstream.pid,
    sql,
    databaseUrl,
    redisUrl,
    prefix,
    async startParley({ api, workers, label, env: extra = {} }) {
      // A prefix of its own (under the run's, so the cleanup below finds it): its jobs are its workers' alone.
      const more = await startParley({ api, workers, label, env: { ...env, ...extra, REDIS_PREFIX: `${prefix}-${label.replace(/[^A-Za-z0-9]/g, "")}` }, nodeFlags });
      parleys.push(more);
      return more;
    },
    log,
    skipPeer: args["skip-peer"],
  };
  const results: ScenarioResult[] = [];
  for (const name of chosen) {
    log(`scenario ${name}…`);
    const started = Date.now();
    results.push(await scenarios[name](ctx));
    log(`scenario ${name} done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }

  const info = await machine(sql);
  for (const p of parleys.reverse()) await p.stop();
  parleys.length = 0;
  for (const c of children.reverse()) await c.stop();
  children.length = 0;
  const profiles = args["cpu-prof"]
    ? readdirSync(profileDir)
        .filter((f) => f.endsWith(".cpuprofile"))
        .flatMap((f) => [`- ${f}`, ...summarizeProfile(join(profileDir, f))])
    : [];
  const setup = {
    "API processes": Number(args.api),
    "worker processes": Number(args.workers),
    "worker concurrency": Math.ceil(1_200 / Number(args.workers)),
    mode: args.quick ? "quick (tiny sizes: a smoke run, not figures to quote)" : "full",
  };
  const when = new Date().toISOString();
  const command = `npm run bench --${process.argv.slice(2).map((a) => ` ${a}`).join("")}`;
  mkdirSync(join(args.out, "charts"), { recursive: true });
  for (const chart of results.flatMap((r) => r.charts ?? [])) writeFileSync(join(args.out, "charts", chart.file), await renderSvg(chart.spec));
  // The charts' data is in each case's raw figures already: results.json names the files only.
  const json = results.map(({ charts, ...r }) => ({ ...r, charts: charts?.map((c) => `charts/${c.file}`) }));
  writeFileSync(join(args.out, "results.json"), JSON.stringify({ when, command, machine: info, setup, scenarios: json }, null, 2));
  const markdown = renderMarkdown({ when, command, machine: info, setup, scenarios: results });
  writeFileSync(join(args.out, "RESULTS.md"), markdown);
  if (profiles.length) writeFileSync(join(args.out, "PROFILE.md"), renderProfiles(when, command, profiles));
  console.log(markdown);
} finally {
  for (const p of parleys.reverse()) await p.stop();
  for (const c of children.reverse()) await c.stop().catch(() => {});
  await sql?.end({ timeout: 1 });
  await removeRunData();
}

/** Drops the run's database and deletes its Redis keys. */
async function removeRunData(): Promise<void> {
  const admin = postgres(serverUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`drop database if exists ${new URL(databaseUrl).pathname.slice(1)} with (force)`).catch(() => {});
  await admin.end({ timeout: 1 });
  const redis = new Redis(redisUrl);
  // Parley's keys, the floor's queue, and those of the extra setups (`${prefix}-<label>:…`).
  const keys = await redis.keys(`${prefix}*`);
  for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
  redis.disconnect();
}
