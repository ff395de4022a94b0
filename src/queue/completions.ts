import { Queue, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import { z } from "zod";

export const COMPLETIONS_QUEUE = "completions";

/** What a job carries: ids only; the worker reads the rest from Postgres. */
export const replyJobSchema = z.object({
  replyId: z.string().startsWith("msg_"),
  tenantId: z.string().min(1),
});
export type ReplyJob = z.infer<typeof replyJobSchema>;

export interface ReplyQueue {
  enqueue(job: ReplyJob): Promise<void>;
  close(): Promise<void>;
}

export function createReplyQueue(opts: { connection: Redis; prefix: string }): ReplyQueue {
  const queue = new Queue<ReplyJob>(COMPLETIONS_QUEUE, {
    connection: opts.connection,
    prefix: opts.prefix,
    defaultJobOptions: {
      // A model call is not retried blindly by BullMQ: a failure is stored on the reply.
      attempts: 1,
      removeOnComplete: { count: 1_000 },
      removeOnFail: { count: 10_000 },
    },
  });
  return {
    async enqueue(job) {
      // The reply id is the job id: enqueuing the same reply twice makes one job.
      await queue.add("reply", replyJobSchema.parse(job), { jobId: job.replyId });
    },
    close: () => queue.close(),
  };
}

export interface ReplyWorker {
  close(): Promise<void>;
}

/**
 * Runs `generate` for each job, `concurrency` at a time. Jobs whose data does
 * not parse fail at once instead of reaching the domain.
 */
export function startReplyWorker(opts: {
  connection: Redis;
  prefix: string;
  concurrency: number;
  generate: (job: ReplyJob, signal: AbortSignal) => Promise<void>;
  onError: (err: unknown) => void;
}): ReplyWorker {
  const worker = new Worker<ReplyJob>(
    COMPLETIONS_QUEUE,
    async (job: Job<ReplyJob>, _token?: string, signal?: AbortSignal) => {
      const data = replyJobSchema.parse(job.data);
      await opts.generate(data, signal ?? new AbortController().signal);
    },
    { connection: opts.connection, prefix: opts.prefix, concurrency: opts.concurrency },
  );
  worker.on("error", opts.onError);
  return { close: () => worker.close() };
}
