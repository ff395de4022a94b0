import { Hono } from "hono";
import { sql } from "drizzle-orm";
import { clusterIsUsable, isCluster, type RedisClient } from "../../redis/client.ts";
import type { Database } from "../../db/client.ts";
import type { AppEnv } from "../env.ts";

/**
 * `/healthz` (the process answers) and `/readyz` (Postgres answers, Redis takes a write). Both need no
 * key, so they say nothing but the verdict; which dependency failed goes to the log.
 *
 * Redis is checked with a write to `readyKey`, not a PING: a Redis that answers PING but refuses writes
 * (a replica after a failover: READONLY; a failed snapshot: MISCONF; full under noeviction: OOM) can
 * take no turn. Its eviction policy is checked at start only (src/redis/start-check.ts): a policy changed
 * later is a risk, not an outage, and failing every instance's readiness for it would make it one.
 */
export function healthRoutes(deps: { db: Database; redis: RedisClient; readyKey: string; timeoutMs?: number }) {
  const within = <T,>(work: Promise<T>): Promise<T> =>
    Promise.race([
      work,
      new Promise<T>((_, reject) => setTimeout(() => reject(new Error("timed out")), deps.timeoutMs ?? 2000).unref()),
    ]);
  return new Hono<AppEnv>()
    .get("/healthz", (c) => c.json({ status: "ok" }))
    .get("/readyz", async (c) => {
      // A cluster is ready only when every slot is served, which one node's answer does not show.
      const redisTakesWrites = (isCluster(deps.redis) ? clusterIsUsable(deps.redis) : Promise.resolve()).then(() =>
        deps.redis.set(deps.readyKey, "1", "PX", 60_000),
      );
      const [postgres, redis] = await Promise.allSettled([within(deps.db.execute(sql`select 1`)), within<unknown>(redisTakesWrites)]);
      if (postgres.status === "fulfilled" && redis.status === "fulfilled") return c.json({ status: "ready" });
      c.var.log.warn(
        {
          // Errors are logged by type and code (the logger's formatter): a driver's message can name addresses.
          postgres: postgres.status === "rejected" ? postgres.reason : "ok",
          redis: redis.status === "rejected" ? redis.reason : "ok",
        },
        "not ready",
      );
      return c.json({ status: "unavailable" }, 503);
    });
}
