import { Hono, type MiddlewareHandler } from "hono";
import type { AppEnv } from "../env.ts";

/** What the route needs of the metrics: the exposition of this process's registry. */
export interface MetricsExposition {
  expose(): Promise<{ body: string; contentType: string }>;
}

/**
 * `GET /metrics`: the Prometheus text exposition of this process (see docs/OPERATIONS.md, "Metrics").
 * On the API behind `guard` (METRICS_TOKEN); on a worker's health port, open as /healthz is.
 */
export function metricsRoutes(deps: { metrics: MetricsExposition; guard?: MiddlewareHandler<AppEnv> }) {
  const app = new Hono<AppEnv>();
  if (deps.guard) app.use("/metrics", deps.guard);
  return app.get("/metrics", async (c) => {
    const { body, contentType } = await deps.metrics.expose();
    return c.body(body, 200, { "content-type": contentType, "cache-control": "no-store" });
  });
}
