import { createHash, timingSafeEqual } from "node:crypto";
import { createMiddleware } from "hono/factory";
import type { ApiKeyAuthenticator } from "../access/api-key-cache.ts";
import type { RequestRateLimiter } from "../access/request-rate.ts";
import { AuthenticationError, type LimitState } from "../domain/errors.ts";
import type { AppEnv } from "./env.ts";

/** The token of `Authorization: Bearer <token>`, or null. */
function bearerToken(header: string | undefined): string | null {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? "");
  return match?.[1] ?? null;
}

/** Every /v1 request acts for the tenant of its API key; any other request is a 401. */
export const requireApiKey = (authenticator: ApiKeyAuthenticator) =>
  createMiddleware<AppEnv>(async (c, next) => {
    const token = bearerToken(c.req.header("authorization"));
    if (!token) {
      throw new AuthenticationError("Send your API key as `Authorization: Bearer <key>`.", "missing_api_key");
    }
    const holder = await authenticator.authenticate(token);
    // Unknown, malformed and revoked keys get the same answer.
    if (!holder) throw new AuthenticationError("The API key is not valid (unknown or revoked).", "invalid_api_key");
    c.set("tenantId", holder.tenantId);
    c.set("keyId", holder.keyId);
    c.set("log", c.var.log.child({ tenantId: holder.tenantId, keyPrefix: holder.prefix }));
    await next();
  });

/** Counts the request against its key's budget; every answer says what is left. */
export const limitRequestRate = (requestRate: RequestRateLimiter) =>
  createMiddleware<AppEnv>(async (c, next) => {
    const state = await requestRate.take(c.var.keyId);
    for (const [name, value] of Object.entries(rateLimitHeaders(state))) c.header(name, value);
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
