import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";

/** Headers Parley answers with that a browser app may read (rate limits, request id, idempotency, retry advice). */
export const EXPOSED_HEADERS = [
  "x-request-id",
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
  "x-ratelimit-limit-replies",
  "x-ratelimit-remaining-replies",
  "x-ratelimit-reset-replies",
  "retry-after",
  "retry-after-ms",
  "x-should-retry",
  "idempotent-replayed",
  "x-parley-message-id",
];

/**
 * CORS for browser apps calling Parley directly (CORS_ORIGINS): none configured, no CORS headers at all.
 * Mounted before authentication, since a preflight carries no Authorization. Credentials are never
 * allowed: Parley reads no cookie, its key travels in an Authorization header the page sets itself, so
 * `credentials: include` buys nothing and would only widen what a listed origin's page can send. Requested
 * headers are echoed (hono's default) because the OpenAI SDKs send their own (`x-stainless-*`, `openai-*`).
 */
export function corsFor(origins: readonly string[] | undefined): MiddlewareHandler {
  if (!origins) return async (_c, next) => next();
  return cors({
    // A list answers only the origins in it (and Vary: Origin); `*` answers every origin the same.
    origin: origins[0] === "*" ? "*" : [...origins],
    allowMethods: ["GET", "POST", "PATCH", "DELETE"],
    exposeHeaders: EXPOSED_HEADERS,
    // Chromium caps a cached preflight at 2 hours.
    maxAge: 7200,
    credentials: false,
  });
}
