import type { Redis } from "ioredis";
import { ConfigError } from "../config.ts";

/** Start refuses a Redis that may evict keys: an evicted job, lease or reply slot is lost work. */
export class EvictionPolicyError extends ConfigError {
  override name = "EvictionPolicyError";
  readonly policy: string;
  constructor(policy: string) {
    super(
      `Redis evicts keys under memory pressure (maxmemory-policy ${policy}), which loses queued replies and leases: ` +
        "set `maxmemory-policy noeviction` on the Redis server (redis.conf, CONFIG SET, or the managed service's parameter group)",
    );
    this.policy = policy;
  }
}

/**
 * Reads `maxmemory_policy` from INFO memory (managed Redis often disables CONFIG GET, never INFO) and
 * throws EvictionPolicyError unless it is `noeviction`. Returns the policy, or null when the server does
 * not report one (a Redis-compatible server without the field), which the caller may only warn about.
 * Takes one node: for a cluster, call it for each master.
 */
export async function checkEvictionPolicy(redis: Redis): Promise<string | null> {
  const info = await redis.info("memory");
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1] ?? null;
  if (policy !== null && policy !== "noeviction") throw new EvictionPolicyError(policy);
  return policy;
}
