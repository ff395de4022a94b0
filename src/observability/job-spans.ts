import { SpanKind } from "@opentelemetry/api";
import { jobSubject, type JobRun, type ModelJob } from "../queue/completions.ts";
import { inSpan, tracingOn } from "./spans.ts";

/**
 * The worker's run of a job in a span of its own (`job reply`, `job completion`, `job summary`), a child
 * of BullMQ's consumer span, which continues the trace of the request that queued the job.
 */
export function tracedJobRunner(run: (job: ModelJob, r: JobRun) => Promise<void>): (job: ModelJob, r: JobRun) => Promise<void> {
  if (!tracingOn()) return run;
  return (job, r) => {
    return inSpan(`job ${job.kind}`, SpanKind.INTERNAL, { "parley.job.kind": job.kind, "parley.job.id": jobSubject(job), "parley.job.attempt": r.attempt }, () => run(job, r));
  };
}
