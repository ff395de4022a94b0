import { randomUUID } from "node:crypto";
import { OpenAPIHono } from "@hono/zod-openapi";
import type { ConversationDeps } from "../domain/conversations.ts";
import type { AppEnv } from "./env.ts";
import { ApiError, sendError } from "./errors.ts";
import { chatCompletionRoutes } from "./routes/chat-completions.ts";
import { conversationRoutes } from "./routes/conversations.ts";
import { messageRoutes, type MessageRouteDeps } from "./routes/messages.ts";
import { modelRoutes } from "./routes/models.ts";
import { validationHook } from "./validation.ts";

export type AppDeps = ConversationDeps & MessageRouteDeps & { startedAt: number };

/** The tenant every request acts for until API keys exist (a later issue). */
export const DEFAULT_TENANT = "default";

export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });

  app.use(async (c, next) => {
    const requestId = c.req.header("x-request-id") ?? randomUUID();
    c.set("requestId", requestId);
    c.set("tenantId", DEFAULT_TENANT);
    c.set("log", deps.log.child({ requestId }));
    c.header("x-request-id", requestId);
    await next();
  });

  app.onError((err, c) => sendError(c, err, c.var.log ?? deps.log));
  app.notFound((c) =>
    sendError(c, new ApiError(404, `No route for ${c.req.method} ${c.req.path}.`, "route_not_found"), deps.log),
  );

  app.get("/healthz", (c) => c.json({ status: "ok" }));

  const v1 = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  v1.route("/conversations", conversationRoutes(deps));
  v1.route("/conversations", messageRoutes(deps));
  v1.route("/models", modelRoutes(deps));
  v1.route("/", chatCompletionRoutes(deps));
  app.route("/v1", v1);

  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Parley",
      version: "0.1.0",
      description: "Durable conversations for chat models. Errors: {\"error\":{message,type,param,code}}.",
    },
    servers: [{ url: "/" }],
  });
  return app;
}

export type ParleyApp = ReturnType<typeof createApp>;
