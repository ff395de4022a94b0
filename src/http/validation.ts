import type { Hook } from "@hono/zod-openapi";
import type { AppEnv } from "./env.ts";
import { ApiError, validationError } from "./errors.ts";
import { findBodyLimitBreach, findQueryLimitBreach } from "./input-limits.ts";

/**
 * Every route's zod parse failure becomes a 400 naming the bad field; what
 * parsed is then held to the configured size limits (a 400 naming the limit).
 */
export const validationHook: Hook<any, AppEnv, any, any> = (result, c) => {
  // Thrown, not answered here: every error answer goes out through sendError (app.onError).
  if (!result.success) throw validationError(result.error, result.target);
  const limits = c.var.limits;
  const breach =
    result.target === "json"
      ? findBodyLimitBreach(result.data, limits)
      : result.target === "query"
        ? findQueryLimitBreach(result.data, limits)
        : null;
  if (breach) throw new ApiError(breach.status ?? 400, breach.message, breach.code, breach.param);
};
