import { randomBytes } from "node:crypto";
import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import postgres from "postgres";
import { percentiles, summarize, type Summary } from "./stats.ts";

/**
 * The floor: the round trips a durable turn cannot avoid, and nothing else. Per request, in sequence:
 * one Postgres write transaction (BEGIN; INSERT; COMMIT), one queue hop (a BullMQ job added here and
 * taken by a worker in another process), one pub/sub hop (that worker PUBLISHes, a subscriber here
 * receives). Parley's TTFT overhead is reported as a multiple of it.
 *
 * `node bench/lib/floor.ts '<json FloorWorkerSpec>'` runs the worker side.
 */

export const FLOOR_TABLE = "bench_floor";
export const FLOOR_QUEUE = "bench-floor";

export interface FloorWorkerSpec {
  redisUrl: string;
  /** BullMQ prefix and pub/sub channel prefix: the run's own, so nothing else is touched. */
  prefix: string;
  concurrency: number;
}

export interface FloorLoadSpec extends FloorWorkerSpec {
  databaseUrl: string;
  requests: number;
  deadlineMs: number;
}

export interface FloorResult {
  completed: number;
  failed: number;
  errors: string[];
  seconds: number;
  latencyMs: Summary;
  distributionMs: number[];
}

const channel = (prefix: string) => `${prefix}:bench-floor-done`;
const now = () => performance.timeOrigin + performance.now();

/** The table the floor writes to, in the bench's database. */
export const floorTableDdl = `create table if not exists ${FLOOR_TABLE} (id bigserial primary key, request text not null, created_at timestamptz not null default now())`;

/** The worker side: takes each job and publishes its id, as Parley's worker publishes a reply's first event. */
export function startFloorWorker(spec: FloorWorkerSpec): { ready: Promise<void>; close(): Promise<void> } {
  const publisher = new Redis(spec.redisUrl);
  const worker = new Worker<{ id: string }>(
    FLOOR_QUEUE,
    async (job) => {
      await publisher.publish(channel(spec.prefix), job.data.id);
    },
    { connection: new Redis(spec.redisUrl, { maxRetriesPerRequest: null }), prefix: spec.prefix, concurrency: spec.concurrency },
  );
  worker.on("error", (err) => console.error(`floor worker: ${String(err)}`));
  return {
    ready: worker.waitUntilReady().then(() => undefined),
    async close() {
      await worker.close();
      publisher.disconnect();
    },
  };
}

/** The client side: `requests` floor round trips, `concurrency` at once, each timed from BEGIN to the published id's arrival. */
export async function runFloorLoad(spec: FloorLoadSpec): Promise<FloorResult> {
  const sql = postgres(spec.databaseUrl, { max: spec.concurrency, onnotice: () => {} });
  const redis = new Redis(spec.redisUrl, { maxRetriesPerRequest: null });
  const subscriber = new Redis(spec.redisUrl);
  // Parley's job options: one attempt, the last 1,000 completed jobs kept.
  const queue = new Queue<{ id: string }>(FLOOR_QUEUE, {
    connection: redis,
    prefix: spec.prefix,
    defaultJobOptions: { attempts: 1, removeOnComplete: { count: 1_000 }, removeOnFail: { count: 10_000 } },
  });
  // One subscription for the whole run (a relay subscribes once, not per request): only the hop is timed.
  const waiting = new Map<string, () => void>();
  subscriber.on("message", (_channel: string, id: string) => waiting.get(id)?.());
  await subscriber.subscribe(channel(spec.prefix));
  await sql`select 1`;
  await queue.waitUntilReady();

  const latencies: number[] = [];
  const errors: string[] = [];
  let failed = 0;
  const run = randomBytes(4).toString("hex");
  const started = now();
  const deadline = started + spec.deadlineMs;
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(spec.concurrency, spec.requests) }, async () => {
      while (next < spec.requests && now() < deadline) {
        const id = `floor_${run}_${next++}`;
        const t0 = now();
        try {
          await sql.begin((tx) => tx`insert into ${tx(FLOOR_TABLE)} (request) values (${id})`);
          const arrived = new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no message for ${id} within 10 s`)), 10_000);
            waiting.set(id, () => (clearTimeout(timer), resolve()));
          });
          await queue.add("floor", { id }, { jobId: id });
          await arrived;
          latencies.push(now() - t0);
        } catch (err) {
          failed++;
          if (errors.length < 5) errors.push(String(err));
        } finally {
          waiting.delete(id);
        }
      }
    }),
  );
  const seconds = (now() - started) / 1000;
  await queue.close();
  redis.disconnect();
  subscriber.disconnect();
  await sql.end({ timeout: 1 });
  return { completed: latencies.length, failed, errors, seconds, latencyMs: summarize(latencies), distributionMs: percentiles(latencies) };
}

if (import.meta.main) {
  const worker = startFloorWorker(JSON.parse(process.argv[2] ?? "{}") as FloorWorkerSpec);
  await worker.ready;
  console.log("floor worker ready");
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => void worker.close().then(() => process.exit(0)));
}
