import type { Telemetry } from "bullmq";
import type { RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { ApiKeyAuthenticator } from "./access/api-key-cache.ts";
import { RedisCoolOff } from "./access/redis-cool-off.ts";
import { RedisReplySlots, type ReplySlots } from "./access/reply-slots.ts";
import { RequestRateLimiter } from "./access/request-rate.ts";
import type { Config } from "./config.ts";
import { ContextWindows } from "./context/context-windows.ts";
import { connectDatabase, type Database } from "./db/client.ts";
import { databasePoolOptions } from "./db/settings.ts";
import { Metrics } from "./observability/metrics.ts";
import { instrumentProvider } from "./observability/model-calls.ts";
import { createOpenAICompatibleProvider } from "./providers/openai-compatible.ts";
import { buildModelRegistry, type ModelRegistry } from "./providers/registry.ts";
import { withResilience } from "./providers/resilient.ts";
import { createSimulatorProvider } from "./providers/simulator.ts";
import { createModelJobQueue, type ModelJobQueue } from "./queue/completions.ts";
import { connectRedisClient, jobQueuePrefix, type RedisClient } from "./redis/client.ts";
import { redisClientOptions } from "./redis/options.ts";
import { ReplyEventLog } from "./streams/reply-events.ts";

/** The shared things, built once per process from the config, and closed together. */
export interface Deps {
  config: Config;
  log: Logger;
  db: Database;
  models: ModelRegistry;
  defaultModel: string;
  redis: RedisClient;
  /** BullMQ's key prefix: REDIS_PREFIX, hash-tagged on a cluster. */
  jobQueuePrefix: string;
  replyEvents: ReplyEventLog;
  jobQueue: ModelJobQueue;
  authenticator: ApiKeyAuthenticator;
  requestRate: RequestRateLimiter;
  replySlots: ReplySlots;
  contextWindows: ContextWindows;
  /** This process's Prometheus metrics (GET /metrics). */
  metrics: Metrics;
  /**
   * On a Redis Cluster, reply events are published per shard (SPUBLISH) and followed with SSUBSCRIBE;
   * on one node, with PUBLISH/SUBSCRIBE as before (Redis 6 has no sharded pub/sub).
   */
  shardedReplyEvents: boolean;
  /** A new Redis connection for a blocking reader (the worker, the event follower); `role` names it in the metrics. */
  connectRedis(opts?: RedisOptions, role?: string, clusterOnly?: { shardedSubscribers?: boolean }): RedisClient;
  close(): Promise<void>;
}

export async function buildDeps(config: Config, log: Logger, traced: { queueTelemetry?: Telemetry } = {}): Promise<Deps> {
  const metrics = new Metrics();
  const database = connectDatabase(config.DATABASE_URL, { ...databasePoolOptions(config), statements: metrics.databaseStatements() });
  metrics.databasePoolMax(database.maxConnections);
  const connections: RedisClient[] = [];
  // Read once (TLS files included), for every connection.
  const redisOptions = redisClientOptions(config);
  const onCluster = config.REDIS_CLUSTER_NODES !== undefined;
  const queuePrefix = jobQueuePrefix(config.REDIS_PREFIX, onCluster);
  // `role` names the connection in parley_redis_errors_total.
  const connectRedis = (opts: RedisOptions = {}, role = "other", clusterOnly = {}): RedisClient => {
    const redis = connectRedisClient(redisOptions, config.REDIS_CLUSTER_NODES, { lazyConnect: false, ...opts }, clusterOnly);
    const countError = metrics.redisErrors(role);
    redis.on("error", (err) => {
      countError();
      log.warn({ err }, "redis connection error");
    });
    connections.push(redis);
    return redis;
  };
  // Commands from request handlers fail after a short retry instead of hanging while Redis is away, and
  // after REDIS_COMMAND_TIMEOUT_MS while it is unreachable but the connection still looks open (a
  // partition). Only these non-blocking connections get a command timeout: the blocking ones (the
  // worker's, the subscribers') wait for long on purpose.
  const requestPath: RedisOptions = { maxRetriesPerRequest: 2, commandTimeout: config.REDIS_COMMAND_TIMEOUT_MS };
  const redis = connectRedis(requestPath, "commands");
  // The checks every request makes (key, rate, reply slot) on a connection of their own that sends the
  // commands of concurrent requests in one write: more requests per second in `npm run bench`. Reply
  // events stay off it: batching their writes raised relay lag.
  const accessRedis = connectRedis({ ...requestPath, enableAutoPipelining: true }, "access");
  // After a failed key check, the checks with a fallback skip Redis for a second (src/access/redis-cool-off.ts).
  const accessCoolOff = new RedisCoolOff(1000);
  const policy = {
    maxRetries: config.UPSTREAM_MAX_RETRIES,
    baseDelayMs: config.UPSTREAM_RETRY_BASE_MS,
    maxDelayMs: config.UPSTREAM_RETRY_MAX_MS,
    firstTokenTimeoutMs: config.UPSTREAM_FIRST_TOKEN_TIMEOUT_MS,
    idleTimeoutMs: config.UPSTREAM_IDLE_TIMEOUT_MS,
  };
  const models = buildModelRegistry(
    { simulatorModels: config.SIMULATOR_MODELS, upstreams: config.UPSTREAMS },
    {
      // Metrics outside the retries: a model's TTFT includes them.
      simulator: () =>
        instrumentProvider(
          withResilience(
            createSimulatorProvider({ ttftMs: config.SIMULATOR_TTFT_MS, tokensPerSecond: config.SIMULATOR_TOKENS_PER_SECOND }),
            { ...policy, observer: metrics.upstream("simulator") },
          ),
          metrics,
        ),
      upstream: (u) =>
        instrumentProvider(withResilience(createOpenAICompatibleProvider(u), { ...policy, observer: metrics.upstream(u.name) }), metrics),
    },
  );
  const defaultModel = config.DEFAULT_MODEL ?? models.list()[0]?.id;
  if (!defaultModel) throw new Error("no model is served: set SIMULATOR_MODELS or UPSTREAMS");
  if (!models.resolve(defaultModel)) {
    throw new Error(`DEFAULT_MODEL '${defaultModel}' is not served (served: ${models.describeServed().join(", ")})`);
  }
  const jobQueue = createModelJobQueue({
    connection: connectRedis(requestPath, "queue"),
    prefix: queuePrefix,
    onError: (err) => log.warn({ err }, "job queue error"),
    telemetry: traced.queueTelemetry,
  });
  metrics.watchQueue(() => jobQueue.counts());
  return {
    config,
    log,
    metrics,
    db: database.db,
    models,
    defaultModel,
    redis,
    jobQueuePrefix: queuePrefix,
    shardedReplyEvents: onCluster,
    replyEvents: new ReplyEventLog({ redis, prefix: config.REDIS_PREFIX, ttlSeconds: config.REPLY_EVENTS_TTL_SECONDS, sharded: onCluster }),
    jobQueue,
    authenticator: new ApiKeyAuthenticator({
      db: database.db,
      redis: accessRedis,
      prefix: config.REDIS_PREFIX,
      ttlSeconds: config.API_KEY_CACHE_SECONDS,
      log,
      coolOff: accessCoolOff,
    }),
    requestRate: new RequestRateLimiter({
      redis: accessRedis,
      prefix: config.REDIS_PREFIX,
      requests: config.RATE_LIMIT_REQUESTS,
      windowSeconds: config.RATE_LIMIT_WINDOW_SECONDS,
      log,
      coolOff: accessCoolOff,
    }),
    replySlots: new RedisReplySlots({
      redis: accessRedis,
      prefix: config.REDIS_PREFIX,
      limit: config.MAX_CONCURRENT_REPLIES,
      leaseSeconds: config.REPLY_SLOT_LEASE_SECONDS,
    }),
    contextWindows: new ContextWindows(config.MODEL_CONTEXT_WINDOWS, {
      contextTokens: config.DEFAULT_CONTEXT_TOKENS,
      replyReserveTokens: config.DEFAULT_REPLY_RESERVE_TOKENS,
      tokenRatio: 1,
    }),
    connectRedis,
    async close() {
      await jobQueue.close().catch(() => {});
      await Promise.all(connections.map((r) => r.quit().catch(() => r.disconnect())));
      await database.close();
    },
  };
}
