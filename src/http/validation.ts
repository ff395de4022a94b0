import type { Hook } from "@hono/zod-openapi";
import type { AppEnv } from "./env.ts";
import { validationErrorBody } from "./errors.ts";

/** Every route's zod parse failure becomes a 400 naming the bad field. */

export const validationHook: Hook<any, AppEnv, any, any> = (result, c) => {
  if (!result.success) return c.json(validationErrorBody(result.error, result.target), 400);
};
