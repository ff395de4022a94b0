import { Cluster, Redis, type ClusterOptions, type RedisOptions } from "ioredis";

/**
 * A connection to Redis: one node, or a Redis Cluster. Parley sends the same commands to both; what differs
 * is where keys may live together (jobQueuePrefix) and how readiness is judged (clusterIsUsable).
 */
export type RedisClient = Redis | Cluster;

/** Where Redis is: a URL (one node), or a cluster's seed nodes with the URL giving credentials and TLS. */
export interface RedisTarget {
  url: string;
  clusterNodes?: readonly string[] | undefined;
}

/**
 * One connection to the target. `options` are per-node options (timeouts, retries, TLS, credentials);
 * on a cluster they apply to each node's connection, and the ones ioredis takes at the cluster's level
 * (auto-pipelining, lazy connect) are moved there. `clusterOnly` applies to a cluster alone.
 */
export function connectRedisClient(target: RedisTarget, options: RedisOptions, clusterOnly: Pick<ClusterOptions, "shardedSubscribers"> = {}): RedisClient {
  if (!target.clusterNodes) return new Redis(target.url, options);
  const { enableAutoPipelining, lazyConnect, ...nodeOptions } = options;
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...credentialsFromUrl(target.url), ...nodeOptions },
    ...(enableAutoPipelining !== undefined ? { enableAutoPipelining } : {}),
    ...(lazyConnect !== undefined ? { lazyConnect } : {}),
    slotsRefreshTimeout: Math.max(1000, nodeOptions.connectTimeout ?? 1000),
    ...clusterOnly,
  };
  return new Cluster(target.clusterNodes.map(seedNode), clusterOptions);
}

/** Whether `client` talks to a cluster (its keys must then be hash-tagged where several go together). */
export const isCluster = (client: RedisClient): client is Cluster => client instanceof Cluster;

/**
 * BullMQ's prefix. A queue's Lua scripts touch many of its keys at once, and a cluster runs a script only
 * when all its keys hash to one slot: BullMQ's documented answer is a hash tag in the prefix. One node
 * keeps the plain prefix, so the keys of a running deployment do not move.
 */
export const jobQueuePrefix = (prefix: string, cluster: boolean): string => (cluster ? `{${prefix}}` : prefix);

function seedNode(hostPort: string): { host: string; port: number } {
  const at = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, at), port: Number(hostPort.slice(at + 1)) };
}

/** The user, password and TLS a cluster's nodes are reached with, as REDIS_URL gives them. */
function credentialsFromUrl(url: string): RedisOptions {
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

/**
 * A cluster serves only while every slot is covered (`cluster_state:ok`); one node answering PING is not
 * enough. Asked of each master ioredis knows, so a master that is down or sees the cluster as failed shows.
 */
export async function clusterIsUsable(cluster: Cluster): Promise<void> {
  const masters = cluster.nodes("master");
  if (masters.length === 0) throw new Error("no Redis Cluster master is known");
  await Promise.all(
    masters.map(async (node) => {
      const info = await node.cluster("INFO");
      const state = /cluster_state:(\w+)/.exec(String(info))?.[1];
      if (state !== "ok") throw new Error(`Redis Cluster state is '${state ?? "unknown"}' on ${node.options.host}:${node.options.port}`);
    }),
  );
}
