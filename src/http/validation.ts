import type { Hook } from "@hono/zod-openapi";
import type { AppEnv } from "./env.ts";
import { errorBody, validationErrorBody } from "./errors.ts";
import { findBodyLimitBreach, findQueryLimitBreach } from "./input-limits.ts";

/**
 * Every route's zod parse failure becomes a 400 naming the bad field; what
 * parsed is then held to the configured size limits (a 400 naming the limit).
 */
export const validationHook: Hook<any, AppEnv, any, any> = (result, c) => {
  if (!result.success) return c.json(validationErrorBody(result.error, result.target), 400);
  const limits = c.var.limits;
  const breach =
    result.target === "json"
      ? findBodyLimitBreach(result.data, limits)
      : result.target === "query"
        ? findQueryLimitBreach(result.data, limits)
        : null;
  if (breach) return c.json(errorBody(breach.message, "invalid_request_error", breach.param, breach.code), 400);
};
