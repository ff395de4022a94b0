import { Hono } from "hono";
import { sql } from "drizzle-orm";
import { clusterIsUsable, isCluster, type RedisClient } from "../../redis/client.ts";
import type { Database } from "../../db/client.ts";
import type { AppEnv } from "../env.ts";

/**
 * `/healthz` (the process answers) and `/readyz` (Postgres and Redis answer
 * too). Both need no key, so they say nothing but the verdict; which
 * dependency failed goes to the log.
 */
export function healthRoutes(deps: { db: Database; redis: RedisClient; timeoutMs?: number }) {
  const within = <T,>(work: Promise<T>): Promise<T> =>
    Promise.race([
      work,
      new Promise<T>((_, reject) => setTimeout(() => reject(new Error("timed out")), deps.timeoutMs ?? 2000).unref()),
    ]);
  return new Hono<AppEnv>()
    .get("/healthz", (c) => c.json({ status: "ok" }))
    .get("/readyz", async (c) => {
      // A cluster is ready only when every slot is served, which one PING does not show.
      const redisAnswers: Promise<unknown> = isCluster(deps.redis) ? clusterIsUsable(deps.redis) : deps.redis.ping();
      const [postgres, redis] = await Promise.allSettled([within(deps.db.execute(sql`select 1`)), within<unknown>(redisAnswers)]);
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
