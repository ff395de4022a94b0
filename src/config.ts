import { z } from "zod";
import { contextWindowConfigSchema } from "./context/context-windows.ts";

/**
 * Where an OpenAI-compatible upstream is and which model names it serves.
 * A request's model is routed here when it is in `models`, or starts with
 * `model_prefix` (the prefix is stripped before the upstream sees the name,
 * unless `strip_prefix` is false).
 */
export const upstreamConfigSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/i, "letters, digits, '-' and '_'"),
    base_url: z.url(),
    api_key: z.string().default(""),
    models: z.array(z.string().min(1)).default([]),
    model_prefix: z.string().min(1).optional(),
    strip_prefix: z.boolean().default(true),
    timeout_ms: z.number().int().positive().default(600_000),
  })
  .refine((u) => u.models.length > 0 || u.model_prefix !== undefined, {
    message: "needs `models` or `model_prefix`",
  });
export type UpstreamConfig = z.infer<typeof upstreamConfigSchema>;

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const csv = z
  .string()
  .transform((s) => s.split(",").map((x) => x.trim()).filter(Boolean));
/** A JSON array in one variable, each item checked by `item`. */
const jsonList = <T extends z.ZodType>(item: T) =>
  z
    .string()
    .transform((raw, ctx) => {
      try {
        return JSON.parse(raw) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "is not valid JSON" });
        return z.NEVER;
      }
    })
    .pipe(z.array(item));
const upstreamList = jsonList(upstreamConfigSchema);
/** `*`, or origins exactly as a browser sends them in `Origin`: scheme, host and port only, no trailing slash. */
const corsOrigins = csv.pipe(
  z.union([
    z.tuple([z.literal("*")]),
    z.array(
      z.string().refine((o) => URL.canParse(o) && new URL(o).origin === o && /^https?:/.test(o), {
        error: (issue) => `'${String(issue.input)}' is not an origin (http(s)://host[:port], no path or trailing slash), nor '*' alone`,
      }),
    ).min(1, "lists no origin"),
  ]),
);

/** `host:port`, `[v6]:port` or a bare host (Sentinel's own port, 26379). */
const sentinelAddress = z.string().transform((raw, ctx) => {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(raw);
  const port = Number(m?.[3] ?? 26379);
  if (!m || port < 1 || port > 65535) {
    ctx.addIssue({ code: "custom", message: `'${raw}' is not host:port` });
    return z.NEVER;
  }
  return { host: (m[1] ?? m[2]) as string, port };
});

/** The environment, parsed once at start; nothing else reads process.env. */
export const configSchema = z.object({
  PORT: int(0, 65535).default(8080),
  HOST: z.string().default("0.0.0.0"),
  /**
   * A worker process's own HTTP port for /healthz and /readyz (on HOST); 0, none. Off by default so
   * several workers on one host do not clash; the image sets 8081. ROLE=all answers them on PORT.
   */
  WORKER_HEALTH_PORT: int(0, 65535).default(0),
  DATABASE_URL: z.url().default("postgres://postgres@127.0.0.1:5432/parley"),
  /**
   * redis://[user:password@]host:port[/db], or rediss:// for TLS. With REDIS_SENTINELS its host and port
   * are not used: the Sentinels name the master; its user, password, database and scheme still apply.
   */
  REDIS_URL: z.url().refine((u) => /^rediss?:$/.test(new URL(u).protocol), "must start with redis:// or rediss:// (TLS)").default("redis://127.0.0.1:6379"),
  /** rediss:// only: PEM of the CA that signed Redis's certificate (it replaces Node's public roots). */
  REDIS_TLS_CA_FILE: z.string().min(1).optional(),
  /** rediss:// only: the name to check Redis's certificate against, when it is not REDIS_URL's host. */
  REDIS_TLS_SERVERNAME: z.string().min(1).optional(),
  /**
   * rediss:// only: `false` accepts any certificate, so anyone on the path can read and change the traffic.
   * A last resort: give REDIS_TLS_CA_FILE (and REDIS_TLS_SERVERNAME) instead.
   */
  REDIS_TLS_REJECT_UNAUTHORIZED: z.stringbool().default(true),
  /** rediss:// only: a client certificate and its key (PEM), for a Redis that asks for one (`tls-auth-clients yes`). */
  REDIS_TLS_CERT_FILE: z.string().min(1).optional(),
  REDIS_TLS_KEY_FILE: z.string().min(1).optional(),
  /** Sentinels to ask for the master, `host:port,host:port` (port 26379 when left out). Needs REDIS_SENTINEL_NAME. */
  REDIS_SENTINELS: csv.pipe(z.array(sentinelAddress).min(1, "lists no Sentinel")).optional(),
  /** The master group's name in the Sentinels' configuration (`sentinel monitor <name> …`). */
  REDIS_SENTINEL_NAME: z.string().min(1).optional(),
  /** The Sentinels' own credentials, when they ask for them (`requirepass` / ACL on the Sentinels). */
  REDIS_SENTINEL_USERNAME: z.string().min(1).optional(),
  REDIS_SENTINEL_PASSWORD: z.string().min(1).optional(),
  /**
   * A Redis Cluster's nodes (`host:port,host:port`; a few are enough, the rest are discovered). Set, Parley
   * talks to the cluster (REDIS_URL then only gives the user, password and TLS) and hash-tags BullMQ's
   * prefix so each queue's keys share a slot.
   */
  REDIS_CLUSTER_NODES: csv
    .pipe(z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, "is not host:port")).min(1, "lists no node"))
    .optional(),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  ROLE: z.enum(["all", "api", "worker"]).default("all"),
  /** Prefix of every Redis key Parley writes (BullMQ's and the reply streams). */
  REDIS_PREFIX: z.string().regex(/^[A-Za-z0-9_.-]+$/).default("parley"),
  /** Replies one worker process generates at once (they wait on the network, not the CPU). */
  WORKER_CONCURRENCY: int(1, 10_000).default(64),
  /**
   * A dead worker's job is taken again once its lock has expired and the next
   * stalled-job check has run: within WORKER_LOCK_MS + WORKER_STALLED_CHECK_MS.
   * Live workers renew their locks every WORKER_LOCK_MS / 2.
   */
  WORKER_LOCK_MS: int(1000).default(10_000),
  WORKER_STALLED_CHECK_MS: int(500).default(5_000),
  /**
   * Every LOST_REPLY_SWEEP_MS the worker holding the sweep lease looks for replies in flight with no
   * job left to run them and no live run, older than LOST_REPLY_GRACE_MS, and
   * fails them (or queues again one no worker took): a lost reply ends within
   * about the grace and two sweeps.
   */
  LOST_REPLY_SWEEP_MS: int(100).default(15_000),
  LOST_REPLY_GRACE_MS: int(0).default(15_000),
  /**
   * One worker at a time runs the sweeps, holding a lease in Redis that it renews every third of this;
   * a dead holder's lease moves to another worker within about 4/3 of it.
   */
  SWEEP_LEASE_MS: int(300).default(30_000),
  /**
   * A worker renews a liveness mark in Redis for each reply it generates every REPLY_LIVENESS_MS
   * (the mark lasts 3 periods). The sweep leaves a marked reply alone, even when its job is gone
   * (Redis restarted empty), and acts on a reply only once it has found it with no job and no mark
   * on two sweeps at least 3 periods apart.
   */
  REPLY_LIVENESS_MS: int(100).default(2_000),
  /** How long SIGTERM waits for in-flight turns and requests before closing anyway. */
  SHUTDOWN_TIMEOUT_MS: int(0).default(30_000),
  /** How long a reply's events stay in Redis after it ends (for followers and reconnects). */
  REPLY_EVENTS_TTL_SECONDS: int(10).default(3600),
  /**
   * How long a worker holds and retries a reply's events while Redis is unreachable; past it
   * the reply fails with `events_unavailable`, keeping the content that was streamed.
   */
  REPLY_EVENTS_OUTAGE_MS: int(0).default(30_000),
  /**
   * How long a worker retries storing a reply's end while Postgres is unreachable (the job stays
   * active meanwhile, so the lost-reply sweep leaves it alone).
   */
  FINAL_WRITE_RETRY_MS: int(0).default(60_000),
  /** How long an Idempotency-Key is remembered (and a keyed stateless completion's events kept). */
  IDEMPOTENCY_KEY_TTL_HOURS: int(1, 24 * 30).default(24),
  /** Interval of the comment line that keeps idle SSE connections open. */
  SSE_HEARTBEAT_MS: int(100).default(15_000),
  /**
   * A reply followed (SSE, a streamed or waiting append, a chat completion) whose events stop for this
   * long has its stored row checked; if it has ended there, its followers end from it.
   */
  REPLY_STALL_CHECK_MS: int(100).default(5_000),
  /** The model a conversation gets when it names none. Defaults to the first served model. */
  DEFAULT_MODEL: z.string().min(1).optional(),
  /** Model names the built-in simulator serves. */
  SIMULATOR_MODELS: csv.default(["parley-sim-1"]),
  SIMULATOR_TTFT_MS: int(0).default(150),
  SIMULATOR_TOKENS_PER_SECOND: int(1).default(60),
  /** Retries of a model call that fails before its first token (429, 5xx, timeouts, refused connections). */
  UPSTREAM_MAX_RETRIES: int(0, 20).default(3),
  UPSTREAM_RETRY_BASE_MS: int(1).default(250),
  /** The longest backoff, and the longest Retry-After honoured (a longer one fails the call). */
  UPSTREAM_RETRY_MAX_MS: int(1).default(10_000),
  /** Time allowed to the first token (or to a whole non-streamed answer). */
  UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: int(1).default(60_000),
  /** Time allowed between tokens once a reply streams. */
  UPSTREAM_IDLE_TIMEOUT_MS: int(1).default(30_000),
  /** OpenAI-compatible upstreams, as a JSON array of {name, base_url, api_key, models, model_prefix}. */
  UPSTREAMS: upstreamList.default([]),
  /** Context windows of served models, JSON (docs/GUIDE.md, "Long conversations"); tried before the built-in families. */
  MODEL_CONTEXT_WINDOWS: jsonList(contextWindowConfigSchema).default([]),
  /** The window of a model neither configured nor of a known family. */
  DEFAULT_CONTEXT_TOKENS: int(256).default(8_192),
  DEFAULT_REPLY_RESERVE_TOKENS: int(1).default(1_024),

  /**
   * Browser origins allowed to call the API (CORS): `*`, or exact origins (`https://app.example.com`),
   * comma-separated. Unset: no CORS headers at all, so browsers keep other origins out.
   */
  CORS_ORIGINS: corsOrigins.optional(),

  /** `GET /docs`: the API reference page rendered from /openapi.json (which is served either way). */
  DOCS_ENABLED: z.stringbool().default(true),
  /** The Scalar standalone bundle /docs loads; unset, Scalar's CDN. Set it to a copy you host when browsers can't reach it. */
  DOCS_SCRIPT_URL: z.url().optional(),
  /** `GET /`: the browser console (sign in with an API key; chat, browse, follow and inspect conversations). */
  CONSOLE_ENABLED: z.stringbool().default(true),

  /** `production` refuses to start open: it needs ADMIN_SECRET or at least one API key. */
  NODE_ENV: z.enum(["production", "development", "test"]).default("development"),
  /** Bearer secret of the admin API (/admin/…); the admin API is off without it. */
  ADMIN_SECRET: z.string().min(32, "must be at least 32 characters").optional(),
  /** Bearer token GET /metrics on the API asks for; unset, it is open (a worker's health port is always open). */
  METRICS_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  /** How long an API key found in Postgres is remembered in Redis (revocation clears it at once). */
  API_KEY_CACHE_SECONDS: int(1).default(300),

  // Limits: each is named in the error a request that breaks it gets.
  /** Largest request body, in bytes (413 beyond). */
  MAX_BODY_BYTES: int(1024).default(4 * 1024 * 1024),
  /** Longest message content (and system prompt), in characters. */
  MAX_CONTENT_CHARS: int(1).default(1_000_000),
  /** Most bytes of images one message may carry inline (base64 data URLs, decoded, summed); 413 `image_too_large` beyond. */
  MAX_IMAGE_BYTES_PER_MESSAGE: int(0).default(20 * 1024 * 1024),
  /** Most messages in one request (an imported history, a chat-completions call). */
  MAX_MESSAGES_PER_REQUEST: int(1).default(1_000),
  MAX_METADATA_ENTRIES: int(0).default(16),
  MAX_METADATA_KEY_CHARS: int(1).default(64),
  MAX_METADATA_VALUE_CHARS: int(1).default(512),
  /** Largest `limit` of a list request. */
  MAX_PAGE_LIMIT: int(1, 10_000).default(100),
  /** Requests one API key may make per RATE_LIMIT_WINDOW_SECONDS, counted across every API instance. */
  RATE_LIMIT_REQUESTS: int(1).default(600),
  RATE_LIMIT_WINDOW_SECONDS: int(1).default(60),
  /** Replies (and chat completions) one tenant may have queued or generating at once. */
  MAX_CONCURRENT_REPLIES: int(1).default(32),
  /** A reply's hold on a concurrency slot lapses after this, should its worker never give it back. */
  REPLY_SLOT_LEASE_SECONDS: int(10).default(900),
  /** Most keys one JSON object in a request body may have (checked before the body is parsed into a schema). */
  MAX_JSON_OBJECT_KEYS: int(16).default(1_000),
  /** Most items one JSON array in a request body may have (`messages` has MAX_MESSAGES_PER_REQUEST instead). */
  MAX_JSON_ARRAY_ITEMS: int(16).default(1_000),
  /** Largest `params` (conversation or turn sampling fields), in bytes of its JSON. */
  MAX_PARAMS_BYTES: int(1024).default(256 * 1024),

  // Bounds on waiting: no request, connection or transaction may wait forever.
  /**
   * A request that has not produced its response by then is answered 503 with Retry-After. A response
   * that has started (a stream) is not cut, nor is the wait for a model's reply once the turn is stored.
   */
  REQUEST_TIMEOUT_MS: int(100).default(10_000),
  /** Postgres: the longest one statement may run (server side, `statement_timeout`). */
  DATABASE_STATEMENT_TIMEOUT_MS: int(100).default(10_000),
  /** Postgres: a session idle inside a transaction this long is ended by the server, freeing its locks. */
  DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: int(100).default(10_000),
  /** Postgres: the longest a new connection may take to be ready. */
  DATABASE_CONNECT_TIMEOUT_MS: int(100).default(5_000),
  /**
   * Postgres: run statements prepared (one round trip each instead of two). `false` behind a pooler in
   * transaction mode (PgBouncer), which cannot keep a connection's prepared statements.
   */
  DATABASE_PREPARED_STATEMENTS: z.stringbool().default(true),
  /**
   * Postgres: send the timeouts above as startup parameters. `false` behind PgBouncer, which refuses them
   * (08P01 unsupported startup parameter): set them on the role or database there (ALTER ROLE … SET).
   */
  DATABASE_STARTUP_PARAMETERS: z.stringbool().default(true),
  /** Postgres: connections per process at most. Unset: the URL's `?max=`, else 10. */
  DATABASE_POOL_MAX: int(1, 1_000).optional(),
  /** Postgres: an unused connection is closed after this many seconds (0: kept). */
  DATABASE_IDLE_TIMEOUT_S: int(0).default(60),
  /** Postgres: a connection is replaced after this many seconds (0: never). Unset: 30 to 60 minutes at random. */
  DATABASE_MAX_LIFETIME_S: int(0).optional(),
  /** Postgres: `application_name` of this process's connections. Unset: `parley-<ROLE>-<hostname>-<pid>`. */
  DATABASE_APPLICATION_NAME: z.string().min(1).max(63).optional(),
  /**
   * Postgres: a direct URL (not through a pooler) for migrations and for creating a missing database.
   * Unset: DATABASE_URL.
   */
  DATABASE_MIGRATION_URL: z.url().optional(),
  /** Apply migrations at start. `false` when they run as a separate step (`npm run db:migrate`). */
  MIGRATE_ON_START: z.stringbool().default(true),
  /** Redis: the longest a connection may take to be ready, and a request-path command to be answered. */
  REDIS_CONNECT_TIMEOUT_MS: int(100).default(2_000),
  REDIS_COMMAND_TIMEOUT_MS: int(100).default(2_000),
  /**
   * Redis: how long start waits for Redis to answer (it may still be starting). A certificate, password or
   * eviction-policy problem ends start at once, saying which setting to change.
   */
  REDIS_START_TIMEOUT_MS: int(100).default(10_000),
  /** HTTP server: time to receive a request's headers, and its whole body (408 beyond; responses are not cut). */
  HTTP_HEADERS_TIMEOUT_MS: int(100).default(10_000),
  HTTP_REQUEST_TIMEOUT_MS: int(100).default(30_000),
  /** HTTP server: how long an idle keep-alive connection is kept open (Node's own default; above common load balancers' 60 s). */
  HTTP_KEEP_ALIVE_TIMEOUT_MS: int(100).default(65_000),
  /** HTTP server: connections held at once; more are refused. */
  HTTP_MAX_CONNECTIONS: int(1).default(10_000),
  /**
   * An Idempotency-Key claimed by a request that has stored nothing yet lapses this long after the
   * claim was last renewed (a live request renews it every third of this), so a crashed API frees it.
   */
  IDEMPOTENCY_CLAIM_LEASE_MS: int(1000).default(30_000),

  // Traces (OpenTelemetry), under the standard OTEL_* names; off unless an endpoint is set (docs/OPERATIONS.md).
  /** OTLP/HTTP base URL (`/v1/traces` is appended); set, and spans are exported there. */
  OTEL_EXPORTER_OTLP_ENDPOINT: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
  /** OTLP/HTTP URL of traces, used as given; wins over OTEL_EXPORTER_OTLP_ENDPOINT. */
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional(),
  /** Headers sent with every export, `key=value,key2=value2` (an auth token for a hosted collector). */
  OTEL_EXPORTER_OTLP_HEADERS: z.string().optional(),
  /** The longest one export may take (then its spans are dropped), in ms; it also bounds the flush at stop. */
  OTEL_EXPORTER_OTLP_TIMEOUT: int(100).default(10_000),
  /** `service.name` of the spans. Unset: `parley-api`, `parley-worker` or `parley` (ROLE=all). */
  OTEL_SERVICE_NAME: z.string().min(1).optional(),
  /** How often finished spans are sent in one batch, in ms (OTel's default 5000). */
  OTEL_BSP_SCHEDULE_DELAY: int(1).default(5_000),
  /** Spans held for export at most; beyond it new ones are dropped rather than memory grown. */
  OTEL_BSP_MAX_QUEUE_SIZE: int(1).default(2_048),
  /** Share of new traces recorded (parent-based: a request whose caller sampled its trace is always recorded). */
  OTEL_TRACES_SAMPLER_ARG: z.coerce.number().min(0).max(1).default(1),
  /** `true` turns traces off whatever the endpoint. */
  OTEL_SDK_DISABLED: z.stringbool().default(false),
}).refine((c) => c.WORKER_STALLED_CHECK_MS <= c.WORKER_LOCK_MS, {
  // A check rarer than the lock lasts only delays recovery past what WORKER_LOCK_MS promises.
  message: "must not be longer than WORKER_LOCK_MS (a dead worker's job is taken again within their sum)",
  path: ["WORKER_STALLED_CHECK_MS"],
}).superRefine((c, ctx) => {
  // A TLS setting beside a plain redis:// URL would be ignored: the traffic would go out unencrypted.
  if (!c.REDIS_URL.startsWith("rediss:")) {
    for (const setting of ["REDIS_TLS_CA_FILE", "REDIS_TLS_SERVERNAME", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE"] as const) {
      if (c[setting] !== undefined) ctx.addIssue({ code: "custom", path: [setting], message: "needs a rediss:// REDIS_URL (TLS); it is redis://" });
    }
  }
  if ((c.REDIS_TLS_CERT_FILE === undefined) !== (c.REDIS_TLS_KEY_FILE === undefined)) {
    ctx.addIssue({ code: "custom", path: [c.REDIS_TLS_CERT_FILE ? "REDIS_TLS_KEY_FILE" : "REDIS_TLS_CERT_FILE"], message: "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together" });
  }
  if (c.REDIS_SENTINELS && !c.REDIS_SENTINEL_NAME) {
    ctx.addIssue({ code: "custom", path: ["REDIS_SENTINEL_NAME"], message: "is needed with REDIS_SENTINELS (the master group's name)" });
  }
  if (c.REDIS_CLUSTER_NODES && c.REDIS_SENTINELS) {
    ctx.addIssue({ code: "custom", path: ["REDIS_SENTINELS"], message: "cannot go with REDIS_CLUSTER_NODES: a cluster fails over by itself" });
  }
  if (c.REDIS_CLUSTER_NODES && /^rediss?:\/\/[^/]*\/\d+/.test(c.REDIS_URL) && !/\/0\/?$/.test(c.REDIS_URL)) {
    ctx.addIssue({ code: "custom", path: ["REDIS_URL"], message: "names a database, which a Redis Cluster does not have (only 0)" });
  }
  if (!c.REDIS_SENTINELS) {
    for (const setting of ["REDIS_SENTINEL_NAME", "REDIS_SENTINEL_USERNAME", "REDIS_SENTINEL_PASSWORD"] as const) {
      if (c[setting] !== undefined) ctx.addIssue({ code: "custom", path: [setting], message: "is only used with REDIS_SENTINELS, which is not set" });
    }
  }
});
export type Config = z.infer<typeof configSchema>;

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses the environment; the message names every bad variable on one line. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const picked = Object.fromEntries(
    Object.keys(configSchema.shape).map((k) => [k, env[k] === "" ? undefined : env[k]]),
  );
  const parsed = configSchema.safeParse(picked);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => {
      const [variable, ...rest] = i.path;
      const where = rest.length ? `${String(variable)}[${rest.join(".")}]` : String(variable);
      return `${where}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration: ${problems.join("; ")}`);
  }
  return parsed.data;
}
