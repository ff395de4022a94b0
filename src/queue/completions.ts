import { Queue, Worker, type Job, type Telemetry } from "bullmq";
import type { RedisClient } from "../redis/client.ts";
import { z } from "zod";
import type { ChatMessage } from "../providers/types.ts";

export const COMPLETIONS_QUEUE = "completions";

/**
 * A conversation's reply: ids only, the worker reads the rest from Postgres.
 * `upstreamStream` is how the provider is asked (the plain chat-completions
 * API calls the upstream streaming or not as its client asked).
 */
export const replyJobSchema = z.object({
  kind: z.literal("reply"),
  replyId: z.string().startsWith("msg_"),
  tenantId: z.string().min(1),
  upstreamStream: z.boolean().default(true),
  requestId: z.string().optional(),
});
export type ReplyJob = z.input<typeof replyJobSchema>;

/**
 * A stateless chat completion: nothing is stored in Postgres for it, so the
 * job carries the request itself, messages and params (tools, n, …) as the client sent them.
 */
export const completionJobSchema = z.object({
  kind: z.literal("completion"),
  completionId: z.string().startsWith("chatcmpl_"),
  tenantId: z.string().min(1),
  model: z.string().min(1),
  // Validated at the edge (the chat-completions wire) and carried as given: content parts, tool calls, names.
  messages: z.array(
    z.custom<ChatMessage>((m) => typeof m === "object" && m !== null && typeof (m as { role?: unknown }).role === "string", {
      message: "a chat message",
    }),
  ),
  params: z.record(z.string(), z.unknown()),
  upstreamStream: z.boolean(),
  /** Keep the events this long after the end (longer than usual when an Idempotency-Key may replay them). */
  retainEventsSeconds: z.int().positive().optional(),
  requestId: z.string().optional(),
});
export type CompletionJob = z.infer<typeof completionJobSchema>;

/**
 * Fold a `summarize` conversation's evicted messages into its running
 * summary, from where the summary ends up to `throughSeq`.
 */
export const summaryJobSchema = z.object({
  kind: z.literal("summary"),
  conversationId: z.string().startsWith("conv_"),
  tenantId: z.string().min(1),
  /** Where the summary ended when the job was asked for: one job per starting point. */
  fromSeq: z.int().min(0),
  throughSeq: z.int().min(1),
  requestId: z.string().optional(),
});
export type SummaryJob = z.infer<typeof summaryJobSchema>;

export const jobSchema = z.discriminatedUnion("kind", [replyJobSchema, completionJobSchema, summaryJobSchema]);
export type ModelJob = z.output<typeof jobSchema>;

/** The reply, completion or conversation (a summary's) a job is for: how logs and spans name it. */
export const jobSubject = (job: ModelJob): string =>
  job.kind === "reply" ? job.replyId : job.kind === "completion" ? job.completionId : job.conversationId;

export type JobState = "pending" | "ended" | "gone";

export interface ModelJobQueue {
  enqueue(job: ReplyJob | CompletionJob | SummaryJob): Promise<void>;
  /** Whether the job can still run: waiting, delayed or active (not finished, failed or gone). */
  isPending(jobId: string): Promise<boolean>;
  /**
   * Where the job is: it can still run (`pending`), it has run (`ended`: completed or failed, still
   * recorded), or Redis holds no such job (`gone`: never added, removed, or lost with Redis's data).
   */
  jobState(jobId: string): Promise<JobState>;
  /** Jobs by state, for the metrics. */
  counts(): Promise<{ waiting: number; active: number; delayed: number }>;
  close(): Promise<void>;
}

export function createModelJobQueue(opts: {
  connection: RedisClient;
  prefix: string;
  onError: (err: unknown) => void;
  /** Traces on: the job carries the trace context of the request that queued it. */
  telemetry?: Telemetry;
}): ModelJobQueue {
  const queue = new Queue<ModelJob>(COMPLETIONS_QUEUE, {
    connection: opts.connection,
    prefix: opts.prefix,
    telemetry: opts.telemetry,
    defaultJobOptions: {
      // A model call is not retried blindly by BullMQ: a failure is reported on the reply.
      attempts: 1,
      removeOnComplete: { count: 1_000 },
      removeOnFail: { count: 10_000 },
    },
  });
  // Without a listener BullMQ prints connection errors itself; ours go to the log.
  queue.on("error", opts.onError);
  const jobState = async (jobId: string): Promise<JobState> => {
    const state = await queue.getJobState(jobId);
    if (state === "unknown") return "gone";
    return state === "completed" || state === "failed" ? "ended" : "pending";
  };
  return {
    async enqueue(job) {
      const data = jobSchema.parse(job);
      // The reply's (or completion's) id is the job id: enqueuing it twice makes one job.
      // A summary's is its conversation and starting point; a failed one is removed so a later turn can ask again.
      if (data.kind === "summary") {
        await queue.add(data.kind, data, { jobId: `summary_${data.conversationId}_${data.fromSeq}`, removeOnFail: true });
        return;
      }
      await queue.add(data.kind, data, { jobId: data.kind === "reply" ? data.replyId : data.completionId });
    },
    jobState,
    async counts() {
      const c = await queue.getJobCounts("waiting", "active", "delayed");
      return { waiting: c.waiting ?? 0, active: c.active ?? 0, delayed: c.delayed ?? 0 };
    },
    isPending: async (jobId) => (await jobState(jobId)) === "pending",
    close: () => queue.close(),
  };
}

export interface ModelJobWorker {
  close(): Promise<void>;
}

/** What the processor knows about the run beyond the job's data. */
export interface JobRun {
  /** Aborts when this run has lost its job (its lock was taken or lapsed and the job was queued again). */
  signal: AbortSignal;
  /** This job ran before and did not finish (its worker died or stalled): it starts over. */
  restarted: boolean;
  /** How many times the job has been started, this run included: a later run has a larger number. */
  attempt: number;
}

/** The run's job lock was lost: the job runs (or will run) again elsewhere, so this run stops. */
export class JobLockLostError extends Error {
  override name = "JobLockLostError";
}

/**
 * Runs `run` for each job, `concurrency` at a time. Jobs whose data does not
 * parse fail at once instead of reaching the domain. A job whose worker dies
 * is taken again, by any worker, once its lock (`lockMs`) has expired and the
 * next stalled-job check (`stalledCheckMs`) has run: within about the sum.
 */
export function startModelJobWorker(opts: {
  connection: RedisClient;
  prefix: string;
  concurrency: number;
  lockMs: number;
  stalledCheckMs: number;
  run: (job: ModelJob, run: JobRun) => Promise<void>;
  onError: (err: unknown) => void;
  /** Traces on: each job runs in a consumer span continuing the trace that queued it. */
  telemetry?: Telemetry;
}): ModelJobWorker {
  // Runs in this process, by job id: a job can be here twice (a run that lost its lock, and the run that took it over).
  const runs = new Map<string, Set<RunEntry>>();
  const worker = new Worker<ModelJob>(
    COMPLETIONS_QUEUE,
    async (job: Job<ModelJob>, token?: string, signal?: AbortSignal) => {
      const id = job.id ?? "";
      let mine = runs.get(id);
      if (!mine) runs.set(id, (mine = new Set()));
      const earlier = [...mine];
      const entry: RunEntry = {
        token: token ?? "",
        lost: new AbortController(),
        finished: Promise.withResolvers<void>(),
        // The lock was taken when the job became active, for lockMs.
        lockedUntil: (job.processedOn ?? Date.now()) + opts.lockMs,
        orphaned: false,
      };
      mine.add(entry);
      try {
        await opts.run(jobSchema.parse(job.data), {
          signal: signal ? AbortSignal.any([signal, entry.lost.signal]) : entry.lost.signal,
          restarted: job.attemptsStarted > 1 || job.stalledCounter > 0,
          attempt: job.attemptsStarted,
        });
      } finally {
        mine.delete(entry);
        if (mine.size === 0) runs.delete(id);
        entry.finished.resolve();
      }
      // BullMQ tracks one lock per job id in a process: when a run that lost its job returns, BullMQ stops
      // renewing the lock of the run that took the job over here, which would then stall in its turn.
      // So a run returns only after the later runs of its job in this process have.
      for (const later of mine) if (!earlier.includes(later)) await later.finished.promise;
    },
    {
      connection: opts.connection,
      prefix: opts.prefix,
      concurrency: opts.concurrency,
      lockDuration: opts.lockMs,
      stalledInterval: opts.stalledCheckMs,
      telemetry: opts.telemetry,
      // A reply outlives a few lost workers before it is given up (and failed by the sweep).
      maxStalledCount: 3,
    },
  );
  worker.on("error", opts.onError);
  // BullMQ only reports a lock it could not renew; the run goes on unless told. A run whose token no
  // longer holds the lock of a job that still exists has lost it (the stalled check queued the job again,
  // or another worker took it): it stops, and its upstream call with it. When the job itself is gone
  // (Redis lost its data), nobody else can run it, so the run finishes the reply.
  worker.on("lockRenewalFailed", (jobIds: string[]) => {
    for (const jobId of jobIds) {
      for (const run of runs.get(jobId) ?? []) {
        void lockHolder(opts.connection, worker.toKey(jobId), run.token).then(
          (holder) => {
            if (holder === "job gone") run.orphaned = true;
            else if (holder === "another") run.lost.abort(new JobLockLostError(`the lock of job ${jobId} was lost`));
          },
          (err: unknown) => opts.onError(err),
        );
      }
    }
  });
  worker.on("locksRenewed", ({ jobIds }: { jobIds: string[] }) => {
    const until = Date.now() + opts.lockMs;
    for (const jobId of jobIds) for (const run of runs.get(jobId) ?? []) run.lockedUntil = until;
  });
  // A run that cannot reach Redis hears of no failed renewal, yet its lock lapses all the same, and
  // another worker may take the job: it stops just before then, so no reply is generated twice at once.
  const margin = Math.min(500, opts.lockMs / 10);
  const lapses = setInterval(() => {
    const now = Date.now();
    for (const [jobId, mine] of runs) {
      for (const run of mine) {
        if (!run.orphaned && !run.lost.signal.aborted && now > run.lockedUntil - margin) {
          run.lost.abort(new JobLockLostError(`the lock of job ${jobId} lapsed: not renewed in time`));
        }
      }
    }
  }, Math.max(50, opts.lockMs / 10));
  lapses.unref();
  return {
    close: () => {
      clearInterval(lapses);
      return worker.close();
    },
  };
}

interface RunEntry {
  token: string;
  lost: AbortController;
  finished: PromiseWithResolvers<void>;
  /** When the lock lapses unless renewed (as far as this process knows: renewals push it on). */
  lockedUntil: number;
  /** The job is gone from Redis (it lost its data): no one else can take it, so its lock does not matter. */
  orphaned: boolean;
}

/** Who holds a job's lock, as a run with `token` sees it. */
async function lockHolder(redis: RedisClient, jobKey: string, token: string): Promise<"this run" | "another" | "job gone"> {
  const [exists, holder] = await Promise.all([redis.exists(jobKey), redis.get(`${jobKey}:lock`)]);
  if (exists === 0) return "job gone";
  return holder === token ? "this run" : "another";
}
