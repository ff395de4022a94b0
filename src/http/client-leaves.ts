import type { Context } from "hono";
import type { AppEnv } from "./env.ts";

/** Runs `abandon` once if the client goes away before its response is complete (the request's signal aborts only then). */
export function whenClientLeaves(c: Context<AppEnv>, abandon: () => Promise<void>): void {
  const signal = c.req.raw.signal;
  const log = c.var.log;
  const run = () => void abandon().catch((err: unknown) => log.warn({ err }, "could not stop an abandoned completion"));
  if (signal.aborted) run();
  else signal.addEventListener("abort", run, { once: true });
}
