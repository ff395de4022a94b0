import { randomUUID } from "node:crypto";
import { OpenAPIHono } from "@hono/zod-openapi";
import { bodyLimit } from "hono/body-limit";
import type { RedisClient } from "../redis/client.ts";
import type { ApiKeyAuthenticator } from "../access/api-key-cache.ts";
import type { RequestRateLimiter } from "../access/request-rate.ts";
import type { ConversationDeps } from "../domain/conversations.ts";
import { traceRequests } from "../observability/http-spans.ts";
import type { HttpMetrics } from "../observability/metrics.ts";
import { routeLabel } from "../observability/http.ts";
import { requireAdminSecret, requireApiKeyWithinRate, requireMetricsToken } from "./auth.ts";
import { corsFor } from "./cors.ts";
import { consoleRoutes } from "./console/routes.ts";
import { apiReferenceRoutes } from "./docs/api-reference.ts";
import type { AppEnv } from "./env.ts";
import { ApiError, sendError } from "./errors.ts";
import type { InputLimits } from "./input-limits.ts";
import { checkJsonBody } from "./json-body.ts";
import { requestDeadline } from "./request-deadline.ts";
import { adminKeyRoutes } from "./routes/admin-keys.ts";
import { chatCompletionRoutes } from "./routes/chat-completions.ts";
import { conversationItemRoutes } from "./routes/conversation-items.ts";
import { conversationRoutes } from "./routes/conversations.ts";
import { healthRoutes } from "./routes/health.ts";
import { metricsRoutes, type MetricsExposition } from "./routes/metrics.ts";
import { responseRoutes } from "./routes/responses.ts";
import { messageRoutes, type MessageRouteDeps } from "./routes/messages.ts";
import { modelRoutes } from "./routes/models.ts";
import { validationHook } from "./validation.ts";

export type AppDeps = ConversationDeps &
  MessageRouteDeps & {
    startedAt: number;
    redis: RedisClient;
    /** The key /readyz writes to check that Redis takes writes. */
    readyKey: string;
    authenticator: ApiKeyAuthenticator;
    requestRate: RequestRateLimiter;
    adminSecret: string | undefined;
    limits: InputLimits;
    maxBodyBytes: number;
    /** REQUEST_TIMEOUT_MS: a request with no response by then is answered 503. */
    requestTimeoutMs: number;
    /** CORS_ORIGINS: browser origins allowed to call the API; none, no CORS headers. */
    corsOrigins?: readonly string[];
    /** This process's metrics: requests are counted, SSE relay lag measured, GET /metrics served. */
    metrics?: HttpMetrics & MetricsExposition & { relayLag(seconds: number): void };
    /** METRICS_TOKEN: unset, GET /metrics is open. */
    metricsToken?: string | undefined;
    /** DOCS_ENABLED: GET /docs, the API reference page (DOCS_SCRIPT_URL: the script it loads); absent, no /docs. */
    docs?: { scriptUrl?: string | undefined } | undefined;
    /** CONSOLE_ENABLED: GET /, the browser console (a client of /v1 like any other). */
    console?: boolean;
  };

/** The sections of /openapi.json (and of /docs), in the order a reader meets them. */
const TAGS = [
  { name: "Conversations", description: "Durable conversations: create, list, change, fork, delete." },
  { name: "Messages", description: "A conversation's history; append a message and get its reply (JSON or SSE), follow, cancel, regenerate." },
  { name: "Chat completions", description: "The plain chat-completions API, stateless or bound to a conversation." },
  { name: "Responses", description: "OpenAI's Responses API on any served model." },
  { name: "Conversation items", description: "OpenAI's Conversations API items, over the same stored messages." },
  // Not "Models": /docs lists the schemas under that name.
  { name: "Served models", description: "What this deployment serves." },
  { name: "Admin", description: "API keys, behind ADMIN_SECRET." },
];

/** A caller's request id is kept when it is a plain token; anything else is replaced (it is echoed in a header and logged). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function createApp(deps: AppDeps) {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  const { metrics } = deps;
  const relayLag = metrics ? (seconds: number) => metrics.relayLag(seconds) : undefined;

  app.use(traceRequests());
  app.use(async (c, next) => {
    const given = c.req.header("x-request-id");
    const requestId = given && REQUEST_ID.test(given) ? given : randomUUID();
    c.set("requestId", requestId);
    c.set("log", deps.log.child({ requestId }));
    c.set("limits", deps.limits);
    c.header("x-request-id", requestId);
    c.set("relayLag", relayLag);
    const started = performance.now();
    await next();
    metrics?.requestEnded(c.req.method, routeLabel(c), c.res.status, (performance.now() - started) / 1000);
    // One line per request; the path holds ids only, never the query or the body.
    c.var.log.info(
      { method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started) },
      "request",
    );
  });

  app.use(corsFor(deps.corsOrigins));
  app.use(requestDeadline(deps.requestTimeoutMs));

  app.onError((err, c) => sendError(c, err, c.var.log ?? deps.log));
  app.notFound((c) =>
    sendError(c, new ApiError(404, `No route for ${c.req.method} ${c.req.path}.`, "route_not_found"), deps.log),
  );

  app.route("/", healthRoutes(deps));
  if (deps.docs) app.route("/", apiReferenceRoutes({ documentUrl: "/openapi.json", scriptUrl: deps.docs.scriptUrl }));
  if (deps.console) app.route("/", consoleRoutes());
  if (metrics) app.route("/", metricsRoutes({ metrics, guard: requireMetricsToken(deps.metricsToken) }));

  const limitBody = bodyLimit({
    maxSize: deps.maxBodyBytes,
    onError: (c) =>
      sendError(
        c,
        new ApiError(413, `The request body is larger than ${deps.maxBodyBytes} bytes (MAX_BODY_BYTES).`, "request_too_large"),
        deps.log,
      ),
  });

  const v1 = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  v1.use(requireApiKeyWithinRate(deps.authenticator, deps.requestRate), limitBody, checkJsonBody);
  v1.route("/conversations", conversationRoutes(deps));
  v1.route("/conversations", messageRoutes(deps));
  v1.route("/conversations", conversationItemRoutes(deps));
  v1.route("/models", modelRoutes(deps));
  v1.route("/", chatCompletionRoutes(deps));
  v1.route("/", responseRoutes(deps));
  app.route("/v1", v1);

  const admin = new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
  admin.use(requireAdminSecret(deps.adminSecret), limitBody, checkJsonBody);
  admin.route("/keys", adminKeyRoutes({ db: deps.db, revocations: deps.authenticator }));
  app.route("/admin", admin);

  app.openAPIRegistry.registerComponent("securitySchemes", "apiKey", { type: "http", scheme: "bearer" });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Parley",
      version: "0.1.0",
      description:
        "Durable conversations for chat models. Every /v1 request needs `Authorization: Bearer <API key>`; " +
        "/admin needs the admin secret. Errors: {\"error\":{message,type,param,code}}.",
    },
    servers: [{ url: "/" }],
    security: [{ apiKey: [] }],
    tags: TAGS,
  });
  return app;
}

export type ParleyApp = ReturnType<typeof createApp>;
