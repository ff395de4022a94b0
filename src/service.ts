import type { ServerOptions } from "node:http";
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import type { Logger } from "pino";
import { ConfigError, type Config } from "./config.ts";
import { refuseUnsupportedStartupParameters } from "./db/client.ts";
import { migrateDatabase } from "./db/migrate.ts";
import { migrationTarget } from "./db/settings.ts";
import { buildDeps, type Deps } from "./deps.ts";
import { countActiveApiKeys } from "./domain/api-keys.ts";
import { forgetExpiredIdempotencyKeys } from "./domain/idempotency.ts";
import { LostReplySweep } from "./domain/lost-replies.ts";
import { runSummaryJob } from "./domain/summaries.ts";
import { generateReply } from "./domain/reply-generation.ts";
import { runStatelessCompletion } from "./domain/stateless-completions.ts";
import { createApp } from "./http/app.ts";
import { startHealthServer, type HealthServer } from "./http/health-server.ts";
import { healthRoutes } from "./http/routes/health.ts";
import { metricsRoutes } from "./http/routes/metrics.ts";
import { inputLimitsFrom } from "./http/input-limits.ts";
import { tracedJobRunner } from "./observability/job-spans.ts";
import { startTracing } from "./observability/tracing.ts";
import { jobSubject, startModelJobWorker, type ModelJobWorker } from "./queue/completions.ts";
import { RedisLease, startLeasedSweep, type LeasedSweep } from "./queue/sweep-lease.ts";
import { CancellationListener, publishCancel } from "./queue/reply-cancellation.ts";
import { redisClientOptions } from "./redis/options.ts";
import { checkRedisAtStart } from "./redis/start-check.ts";
import { ReplyEventFollower } from "./streams/reply-event-follower.ts";

export interface RunningService {
  /** The API's base URL (`http://host:port`), when this process serves the API. */
  url: string | null;
  /**
   * Stops taking requests and jobs, lets in-flight ones finish for up to
   * `timeoutMs`, then closes every connection.
   */
  stop(timeoutMs?: number): Promise<void>;
}

/**
 * Bounds on a client that sends slowly: its headers, and its whole request, must arrive in time, else
 * Node answers 408 and closes the connection. These clocks stop once the request is received: a long
 * response (an SSE stream) is not cut. Node checks them every `connectionsCheckingInterval`, so that
 * is kept well under the shorter one.
 */
function httpServerOptions(config: Config): ServerOptions {
  const requestTimeout = config.HTTP_REQUEST_TIMEOUT_MS;
  // Node requires headersTimeout <= requestTimeout.
  const headersTimeout = Math.min(config.HTTP_HEADERS_TIMEOUT_MS, requestTimeout);
  return {
    headersTimeout,
    requestTimeout,
    keepAliveTimeout: config.HTTP_KEEP_ALIVE_TIMEOUT_MS,
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(headersTimeout / 4))),
  };
}

const withinBound = (work: Promise<unknown>, ms: number): Promise<unknown> =>
  Promise.race([work, new Promise((r) => setTimeout(r, ms).unref())]);

/**
 * In production an API with neither an admin secret nor a single API key
 * could only be used after someone reached into its database: refuse to start,
 * saying what to set.
 */
async function refuseToRunOpen(config: Config, deps: Deps): Promise<void> {
  if (config.NODE_ENV !== "production" || config.ROLE === "worker" || config.ADMIN_SECRET) return;
  if ((await countActiveApiKeys(deps.db)) > 0) return;
  throw new ConfigError(
    "NODE_ENV=production needs a way in: set ADMIN_SECRET (32+ characters) to manage keys over /admin/keys, " +
      "or create a key first with `npm run keys -- create --tenant <name>`.",
  );
}

/** Starts the roles `config.ROLE` asks for, after applying migrations (unless MIGRATE_ON_START=false). */
export async function startService(config: Config, log: Logger): Promise<RunningService> {
  // Bounded, and first: a Redis that cannot be used ends start here, saying which setting to change.
  await checkRedisAtStart({ options: redisClientOptions(config), clusterNodes: config.REDIS_CLUSTER_NODES, prefix: config.REDIS_PREFIX, startTimeoutMs: config.REDIS_START_TIMEOUT_MS, log });
  if (config.MIGRATE_ON_START) {
    const { url, opts } = migrationTarget(config);
    await migrateDatabase(url, opts);
  }
  // First: the queue, the worker and the app take their tracing hooks as they are built.
  const tracing = await startTracing(config, log);
  const flushTraces = () => tracing.shutdown(Math.min(config.OTEL_EXPORTER_OTLP_TIMEOUT, 5_000));
  const deps = await buildDeps(config, log, { queueTelemetry: tracing.queueTelemetry });
  await refuseUnsupportedStartupParameters(deps.db).then(() => refuseToRunOpen(config, deps)).catch(async (err: unknown) => {
    await deps.close();
    throw err;
  });
  const readyKey = `${config.REDIS_PREFIX}:readyz`;
  const runsApi = config.ROLE !== "worker";
  const runsWorker = config.ROLE !== "api";

  let worker: ModelJobWorker | null = null;
  let sweeps: LeasedSweep | null = null;
  let healthServer: HealthServer | null = null;
  if (runsWorker) {
    const cancellations = new CancellationListener({
      subscriber: deps.connectRedis({ maxRetriesPerRequest: null }, "cancellations"),
      prefix: config.REDIS_PREFIX,
      log,
    });
    await cancellations.ready();
    const replyWriteBounds = { eventsOutageMs: config.REPLY_EVENTS_OUTAGE_MS, finalWriteRetryMs: config.FINAL_WRITE_RETRY_MS };
    const replyLivenessMs = config.REPLY_LIVENESS_MS;
    worker = startModelJobWorker({
      connection: deps.connectRedis({ maxRetriesPerRequest: null }, "worker"),
      prefix: deps.jobQueuePrefix,
      concurrency: config.WORKER_CONCURRENCY,
      lockMs: config.WORKER_LOCK_MS,
      stalledCheckMs: config.WORKER_STALLED_CHECK_MS,
      telemetry: tracing.queueTelemetry,
      run: tracedJobRunner(async (job, run) => {
        const jobId = jobSubject(job);
        // Every line the job logs names it, its tenant and the request that asked for it.
        const jobLog = log.child({ jobId, tenantId: job.tenantId, requestId: job.requestId });
        const started = performance.now();
        const jobEnded = deps.metrics.jobStarted(job.kind);
        let threw = false;
        jobLog.info({ kind: job.kind }, "model job started");
        try {
          if (job.kind === "reply") await generateReply({ ...deps, log: jobLog, cancellations, replyWriteBounds, replyLivenessMs }, job, run);
          else if (job.kind === "completion") await runStatelessCompletion({ ...deps, log: jobLog, cancellations, replyWriteBounds }, job, run);
          else await runSummaryJob({ ...deps, log: jobLog }, job, run);
          jobLog.info({ ms: Math.round(performance.now() - started) }, "model job finished");
        } catch (err) {
          threw = true;
          jobLog.warn({ err, ms: Math.round(performance.now() - started) }, "model job ended with an error");
          throw err;
        } finally {
          jobEnded();
          // Summaries run in the background and hold no reply slot; replies and completions give theirs back
          // before their end is announced, so only one whose run threw is given back here.
          if (threw && job.kind !== "summary") {
            await deps.replySlots.release(job.tenantId, jobId).catch((err: unknown) => jobLog.warn({ err }, "could not give back the reply slot"));
          }
        }
      }),
      onError: (err) => log.warn({ err }, "worker error"),
    });
    // One worker at a time sweeps (lost replies, then expired idempotency keys), whatever their number.
    const lease = new RedisLease({ redis: deps.redis, key: `${config.REDIS_PREFIX}:sweep-lease`, ttlMs: config.SWEEP_LEASE_MS });
    sweeps = startLeasedSweep({
      lease,
      intervalMs: config.LOST_REPLY_SWEEP_MS,
      log,
      // A sweep made when this worker takes the lease: its suspects are kept while it holds the lease, and
      // the next holder starts from none (a lost reply then ends a sweep or two later, never sooner).
      newSweep: () => {
        const lostReplies = new LostReplySweep(deps, { graceMs: config.LOST_REPLY_GRACE_MS, livenessMs: replyLivenessMs });
        return async () => {
          await lostReplies.run();
          await forgetExpiredIdempotencyKeys(deps.db, config.IDEMPOTENCY_KEY_TTL_HOURS * 3_600_000);
        };
      },
    });
    // ROLE=all answers /healthz and /readyz on the API's port.
    if (config.ROLE === "worker" && config.WORKER_HEALTH_PORT > 0) {
      const routes = healthRoutes({ ...deps, readyKey }).route("/", metricsRoutes({ metrics: deps.metrics }));
      healthServer = await startHealthServer({ port: config.WORKER_HEALTH_PORT, host: config.HOST, log, routes });
    }
    log.info({ concurrency: config.WORKER_CONCURRENCY, healthUrl: healthServer?.url }, "worker started");
  }

  let server: ServerType | null = null;
  let follower: ReplyEventFollower | null = null;
  let url: string | null = null;
  if (runsApi) {
    follower = new ReplyEventFollower({
      subscriber: deps.connectRedis({ maxRetriesPerRequest: null }, "follower", { shardedSubscribers: deps.shardedReplyEvents }),
      sharded: deps.shardedReplyEvents,
      commands: deps.redis,
      log,
      stallMs: config.REPLY_STALL_CHECK_MS,
    });
    const followers = follower;
    deps.metrics.watchFollowers(() => followers.size);
    const app = createApp({
      ...deps,
      follower,
      heartbeatMs: config.SSE_HEARTBEAT_MS,
      startedAt: Math.floor(Date.now() / 1000),
      readyKey,
      signalCancel: (replyId) => publishCancel(deps.redis, config.REDIS_PREFIX, replyId),
      idempotencyTtlMs: config.IDEMPOTENCY_KEY_TTL_HOURS * 3_600_000,
      idempotencyClaimLeaseMs: config.IDEMPOTENCY_CLAIM_LEASE_MS,
      adminSecret: config.ADMIN_SECRET,
      limits: inputLimitsFrom(config),
      maxBodyBytes: config.MAX_BODY_BYTES,
      requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
      corsOrigins: config.CORS_ORIGINS,
      docs: config.DOCS_ENABLED ? { scriptUrl: config.DOCS_SCRIPT_URL } : undefined,
      console: config.CONSOLE_ENABLED,
      metricsToken: config.METRICS_TOKEN,
    });
    server = await new Promise<ServerType>((resolve) => {
      const s = serve(
        { fetch: app.fetch, port: config.PORT, hostname: config.HOST, serverOptions: httpServerOptions(config) },
        () => resolve(s),
      );
    });
    // Connections beyond this are closed as they arrive (net.Server has no constructor option for it).
    server.maxConnections = config.HTTP_MAX_CONNECTIONS;
    const address = server.address() as AddressInfo;
    const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
    url = `http://${host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host}:${address.port}`;
    log.info({ url }, "api listening");
  }

  return {
    url,
    async stop(timeoutMs = config.SHUTDOWN_TIMEOUT_MS) {
      // Given back at once, so another worker sweeps while this one drains.
      const sweepsStopped = sweeps?.stop();
      const httpClosed = server
        ? new Promise<void>((resolve) => server?.close(() => resolve()))
        : Promise.resolve();
      // close() only drops connections idle at the moment it is called; a keep-alive
      // connection whose response ends later would hold the drain open for its timeout.
      const dropIdle = server && "closeIdleConnections" in server
        ? setInterval(() => server.closeIdleConnections(), 100)
        : null;
      // In-flight turns and open responses get until the bound; then everything is cut.
      const workerClosed = worker ? worker.close().then(() => true) : Promise.resolve(true);
      const drained = await withinBound(Promise.all([workerClosed, httpClosed]).then(() => true), timeoutMs);
      if (dropIdle) clearInterval(dropIdle);
      if (server && "closeAllConnections" in server) server.closeAllConnections();
      await follower?.close();
      if (drained !== true && worker) {
        // Replies still generating are left to other workers: their jobs' locks lapse and they
        // run again elsewhere. Closing Postgres and Redis under them now would only make them
        // store a failure on the way out, so the process exits with the connections open.
        log.warn({ timeoutMs }, "drain bound reached; in-flight replies are left to other workers");
        await healthServer?.close();
        await flushTraces();
        return;
      }
      await sweepsStopped;
      // Last, so probes see the worker alive while it drains.
      await healthServer?.close();
      await deps.close();
      await flushTraces();
    },
  };
}
