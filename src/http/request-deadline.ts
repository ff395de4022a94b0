import { createMiddleware } from "hono/factory";
import type { AppEnv } from "./env.ts";
import { ApiError } from "./errors.ts";

/** A request that ran out of time before it could answer (a dependency too slow, or unreachable). */
export class RequestDeadlineError extends ApiError {
  constructor(ms: number) {
    super(503, `The request could not be answered within ${ms} ms (REQUEST_TIMEOUT_MS); try again shortly.`, "service_unavailable");
  }
}

/**
 * Answers 503 (with Retry-After, as every 503 does: src/http/errors.ts) to a
 * request that has not produced its response within `ms`, however its
 * dependencies behave: a partition leaves connections open but silent, and no
 * driver timeout covers every way of waiting (postgres.js has none for a free
 * pool connection). What is already under way is not stopped: it finishes or
 * fails on its own timeouts. A turn checks `c.var.deadline` before it stores
 * anything, so one answered 503 is rolled back unless it was already
 * committing (docs/OPERATIONS.md, "Running at scale").
 *
 * The deadline covers the work a request does against Postgres and Redis.
 * Once a handler has stored what it came to store and only waits for the
 * model, it calls `c.var.liftDeadline()`; a response that has started (a
 * stream) is never cut, since the middleware only races the handler's return.
 * Hono's own `timeout` middleware races the same way but can be neither
 * lifted nor observed (no signal), which these two needs ask for.
 */
export const requestDeadline = (ms: number) =>
  createMiddleware<AppEnv>(async (c, next) => {
    let timer: NodeJS.Timeout | undefined;
    const passed = new AbortController();
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new RequestDeadlineError(ms);
        passed.abort(err);
        reject(err);
      }, ms);
    });
    c.set("deadline", passed.signal);
    c.set("liftDeadline", () => clearTimeout(timer));
    try {
      await Promise.race([next(), expired]);
    } finally {
      clearTimeout(timer);
    }
  });
