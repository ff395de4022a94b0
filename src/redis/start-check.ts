import type { RedisOptions } from "ioredis";
import type { Logger } from "pino";
import { ConfigError } from "../config.ts";
import { clusterIsUsable, connectRedisClient, isCluster } from "./client.ts";
import { checkEvictionPolicy } from "./eviction-policy.ts";

/** Start found Redis unusable as configured; the message names the cause and the setting to change. */
export class RedisUnusableError extends ConfigError {
  override name = "RedisUnusableError";
}

interface Failure {
  message: string;
  /** Redis may answer on a later try (not reachable yet, loading its data); a bad certificate or password never will. */
  transient: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Before anything is served: Redis answers, takes writes, and keeps every key (checkEvictionPolicy).
 * Unreachable or loading, it is tried again until `startTimeoutMs`; anything else ends start at once.
 * Without this, ioredis retries a refused certificate or password for ever and start hangs.
 */
export async function checkRedisAtStart(args: {
  options: RedisOptions;
  /** REDIS_CLUSTER_NODES: the cluster must serve every slot, and each master keep every key. */
  clusterNodes?: readonly string[] | undefined;
  prefix: string;
  startTimeoutMs: number;
  log: Logger;
}): Promise<void> {
  const deadline = Date.now() + args.startTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    const failure = await probeOnce(args.options, args.clusterNodes, args.prefix, Math.max(100, deadline - Date.now()));
    if (failure === null) {
      if (attempt > 1) args.log.info({ attempt }, "redis answers");
      return;
    }
    if (!failure.transient || Date.now() + 500 >= deadline) {
      throw new RedisUnusableError(failure.transient ? `${failure.message} (gave up after REDIS_START_TIMEOUT_MS=${args.startTimeoutMs})` : failure.message);
    }
    if (attempt === 1) args.log.warn({ reason: failure.message }, "redis does not answer yet; trying again");
    await sleep(500);
  }
}

async function probeOnce(options: RedisOptions, clusterNodes: readonly string[] | undefined, prefix: string, timeoutMs: number): Promise<Failure | null> {
  const sentinel = options.sentinels !== undefined && !clusterNodes;
  // One try, no queue: every failure comes back here instead of being retried.
  const redis = connectRedisClient(
    options,
    clusterNodes,
    {
      lazyConnect: true,
      retryStrategy: () => null,
      sentinelRetryStrategy: () => null,
      maxRetriesPerRequest: 0,
      reconnectOnError: () => false,
      // No Sentinel subscriptions for a connection that lives a moment.
      failoverDetector: false,
    },
    { clusterRetryStrategy: () => null },
  );
  // The connection's own events carry the cause (a TLS code, a WRONGPASS); connect() itself often only
  // rejects with "Connection is closed".
  const seen: Error[] = [];
  redis.on("error", (err: Error & { lastNodeError?: Error }) => seen.push(...(err.lastNodeError ? [err.lastNodeError] : []), err));
  redis.on("node error", (err: Error) => seen.push(err));
  redis.on("sentinelError", (err: Error) => seen.push(err));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
  try {
    const outcome = await Promise.race([
      (async () => {
        await redis.connect();
        if (isCluster(redis)) await clusterIsUsable(redis);
        else await redis.ping();
        // A replica answers PING but refuses writes (READONLY); a full or misconfigured one too (OOM, MISCONF).
        await redis.set(`${prefix}:start-check`, "1", "PX", 10_000);
        for (const node of isCluster(redis) ? redis.nodes("master") : [redis]) await checkEvictionPolicy(node);
        return "ok" as const;
      })(),
      timedOut,
    ]);
    if (outcome === "ok") return null;
    return explain(seen, { sentinel, cluster: clusterNodes !== undefined, timedOut: true });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    return explain([...seen, err as Error], { sentinel, cluster: clusterNodes !== undefined, timedOut: false });
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}

/** The first error that says more than "the connection closed". */
function mostTelling(errors: Error[]): Error | null {
  return errors.find((e) => !/^Connection is closed|Stream isn't writeable|enableOfflineQueue/.test(e.message)) ?? errors[0] ?? null;
}

/** ioredis reports a Sentinel's failure as text ("failed to connect to sentinel h:p because connect ECONNREFUSED …"). */
function explainSentinels(errors: Error[]): Failure | null {
  const texts = errors.map((e) => e.message);
  // The name is not monitored there: "ERR No such master with that name" (Redis 7), an empty reply before.
  if (texts.some((t) => /No such master with that name|^connected to sentinel .* invalid reply/.test(t))) {
    return { transient: false, message: "the Sentinels in REDIS_SENTINELS know no master named REDIS_SENTINEL_NAME — check the name (`sentinel monitor <name> …`)" };
  }
  const failed = texts.find((t) => /^failed to connect to sentinel|^All sentinels are unreachable/.test(t));
  if (failed === undefined) return null;
  const code = /\b(E[A-Z]{3,}|ERR_[A-Z_]+|[A-Z]+_CERT[A-Z_]*|WRONGPASS|NOAUTH)\b/.exec(failed)?.[1];
  return { transient: true, message: `no Sentinel in REDIS_SENTINELS answered${code ? ` (${code})` : ""} — check their hosts, ports and REDIS_SENTINEL_PASSWORD` };
}

const UNTRUSTED = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_UNTRUSTED",
  "CERT_SIGNATURE_FAILURE",
]);
const UNREACHABLE = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH", "ETIMEDOUT", "ECONNRESET", "EPIPE"]);

/**
 * What went wrong, in words that name the setting to change. Built from error codes and Redis's error
 * word, never from a message that may carry an address or a password.
 */
export function explain(errors: Error[], how: { sentinel: boolean; cluster?: boolean; timedOut: boolean }): Failure {
  const sentinels = how.sentinel ? explainSentinels(errors) : null;
  if (sentinels) return sentinels;
  const err = mostTelling(errors);
  const code = typeof (err as NodeJS.ErrnoException | null)?.code === "string" ? (err as NodeJS.ErrnoException).code : undefined;
  const message = err?.message ?? "";
  const where = how.sentinel ? "the master that REDIS_SENTINELS name" : how.cluster ? "REDIS_CLUSTER_NODES" : "REDIS_URL";
  if (code && UNTRUSTED.has(code)) {
    const what = code.includes("SELF_SIGNED") ? "self-signed certificate" : "certificate not signed by a trusted CA";
    return { transient: false, message: `Redis TLS: ${what} (${code}) — set REDIS_TLS_CA_FILE to the PEM of the CA that signed it` };
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    const names = (err as Error & { cert?: { subjectaltname?: string } }).cert?.subjectaltname;
    return {
      transient: false,
      message: `Redis TLS: the certificate is not for the host connected to${names ? ` (it names ${names})` : ""} (${code}) — set REDIS_TLS_SERVERNAME to a name it holds`,
    };
  }
  if (code === "CERT_HAS_EXPIRED" || code === "CERT_NOT_YET_VALID") {
    return { transient: false, message: `Redis TLS: the server's certificate is out of its validity dates (${code}) — renew it on the Redis server` };
  }
  if (code?.startsWith("ERR_SSL_") || code === "EPROTO") {
    return { transient: false, message: `Redis TLS: the handshake failed (${code}) — does the port in ${where} speak TLS? A plain port needs redis://, not rediss://` };
  }
  const word = /^[A-Z]{3,}(?= |$)/.exec(message)?.[0];
  if (word === "WRONGPASS") return { transient: false, message: `Redis refused the user or password (WRONGPASS) — check the credentials in REDIS_URL (redis://user:password@host:port)` };
  if (word === "NOAUTH") return { transient: false, message: `Redis asks for a password (NOAUTH) — put it in REDIS_URL (redis://:password@host:port, or redis://user:password@…)` };
  if (word === "NOPERM") return { transient: false, message: `the Redis user lacks a permission Parley needs (NOPERM) — grant it commands and keys under REDIS_PREFIX (ACL SETUSER … ~<prefix>:* +@all)` };
  if (word === "READONLY") return { transient: false, message: `Redis at ${where} is a read-only replica (READONLY) — point REDIS_URL at the primary, or use REDIS_SENTINELS` };
  if (word === "MISCONF") return { transient: false, message: "Redis refuses writes because its last snapshot failed (MISCONF) — fix the Redis server's disk or persistence settings" };
  if (word === "OOM") return { transient: false, message: "Redis refuses writes: it is at maxmemory (OOM) — raise the Redis server's maxmemory or free memory" };
  if (word === "LOADING") return { transient: true, message: "Redis is loading its data (LOADING)" };
  if (word === "CLUSTERDOWN" || /^Redis Cluster state is/.test(message)) {
    return { transient: true, message: "the Redis Cluster does not serve every slot (cluster_state is not ok) — check its masters (CLUSTER INFO)" };
  }
  if (/Node is not in cluster mode|cluster support disabled/i.test(message)) {
    return { transient: false, message: "REDIS_CLUSTER_NODES names a Redis that is not in cluster mode — unset REDIS_CLUSTER_NODES and use REDIS_URL" };
  }
  if (word) return { transient: false, message: `Redis answered an error (${word}) to PING, SET or INFO` };
  // A TLS port spoken to in plain text resets the connection; a plain port sent a TLS hello never answers.
  const scheme = "rediss:// for a TLS port, redis:// for a plain one";
  if (code === "ECONNRESET" || code === "ETIMEDOUT") {
    return { transient: true, message: `Redis at ${where} did not answer (${code}) — check the host and port, and the scheme (${scheme})` };
  }
  if (code && UNREACHABLE.has(code)) return { transient: true, message: `Redis at ${where} is not reachable (${code}) — check the host and port` };
  if (how.timedOut) return { transient: true, message: `Redis at ${where} did not answer — check the host and port, and the scheme (${scheme})` };
  if (/Connection is closed/.test(message)) {
    return { transient: true, message: `Redis at ${where} closed the connection before answering — check the scheme (${scheme})` };
  }
  return { transient: true, message: `Redis at ${where} is not usable (${code ?? err?.name ?? "no answer"})` };
}
