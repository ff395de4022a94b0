import { createHash, timingSafeEqual } from "node:crypto";
import { createMiddleware } from "hono/factory";
import type { ApiKeyAuthenticator } from "../access/api-key-cache.ts";
import type { RequestRateLimiter } from "../access/request-rate.ts";
import { hashApiKey, looksLikeApiKey } from "../domain/api-keys.ts";
import { AuthenticationError, type LimitState } from "../domain/errors.ts";
import type { AppEnv } from "./env.ts";

/** The token of `Authorization: Bearer <token>`, or null. */
function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

/**
 * Every /v1 request acts for the tenant of its API key (any other request is a 401) and is counted
 * against that key's request budget (429 once it is spent; every answer says what is left).
 *
 * The count is kept per key by the key's hash, which is known before the key is looked up, so the
 * lookup (the key cache, in Redis) and the count (Redis) go out together: one round trip, not two.
 * A key that turns out unknown or revoked is answered 401 whatever its count says.
 */
export const requireApiKeyWithinRate = (authenticator: ApiKeyAuthenticator, requestRate: RequestRateLimiter) =>
  createMiddleware<AppEnv>(async (c, next) => {
    const token = bearerToken(c.req.header("authorization"));
    if (!token) {
      throw new AuthenticationError("Send your API key as `Authorization: Bearer <key>`.", "missing_api_key");
    }
    // Unknown, malformed and revoked keys get the same answer; a malformed one is not looked up nor counted.
    const invalid = () => new AuthenticationError("The API key is not valid (unknown or revoked).", "invalid_api_key");
    if (!looksLikeApiKey(token)) throw invalid();
    const keyHash = hashApiKey(token);
    const [holder, rate] = await Promise.allSettled([authenticator.authenticate(keyHash), requestRate.take(keyHash)]);
    if (holder.status === "rejected") throw holder.reason;
    if (!holder.value) throw invalid();
    c.set("tenantId", holder.value.tenantId);
    c.set("keyId", holder.value.keyId);
    c.set("log", c.var.log.child({ tenantId: holder.value.tenantId, keyPrefix: holder.value.prefix }));
    if (rate.status === "rejected") throw rate.reason;
    for (const [name, value] of Object.entries(rateLimitHeaders(rate.value))) c.header(name, value);
    await next();
  });

/** `x-ratelimit-*` as the OpenAI API names them (`-requests`), plus `-replies` for the concurrency limit. */
export function rateLimitHeaders(state: LimitState): Record<string, string> {
  return {
    [`x-ratelimit-limit-${state.kind}`]: String(state.limit),
    [`x-ratelimit-remaining-${state.kind}`]: String(state.remaining),
    [`x-ratelimit-reset-${state.kind}`]: `${Math.ceil(state.resetMs / 1000)}s`,
  };
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/** The admin API answers only to the admin secret, compared in constant time; without one it is off. */
export const requireAdminSecret = (secret: string | undefined) =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (!secret) throw new AuthenticationError("The admin API is off: the server has no ADMIN_SECRET.", "admin_api_disabled");
    const token = bearerToken(c.req.header("authorization"));
    if (!token || !timingSafeEqual(digest(token), digest(secret))) {
      throw new AuthenticationError("Send the admin secret as `Authorization: Bearer <ADMIN_SECRET>`.", "invalid_admin_secret");
    }
    await next();
  });

/** GET /metrics on the API: open unless METRICS_TOKEN is set, then only to that token (compared in constant time). */
export const requireMetricsToken = (secret: string | undefined) =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (secret) {
      const token = bearerToken(c.req.header("authorization"));
      if (!token || !timingSafeEqual(digest(token), digest(secret))) {
        throw new AuthenticationError("Send the metrics token as `Authorization: Bearer <METRICS_TOKEN>`.", "invalid_metrics_token");
      }
    }
    await next();
  });
