import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * The Prometheus metrics of one process (GET /metrics on the API and on the worker's health port). One
 * registry per process, built in deps and passed in through the narrow interfaces below, never
 * prom-client's global one: tests build several services in one process. Every series a hot path
 * touches is bound to its labels once (prom-client's `labels()` hashes them on each call).
 * docs/OPERATIONS.md ("Metrics") lists every metric.
 */

/** The HTTP middleware's view. */
export interface HttpMetrics {
  requestEnded(method: string, route: string, status: number, seconds: number): void;
}

/** A model call's series, bound to its model (see instrumentProvider). */
export interface ModelCallSeries {
  ttft(seconds: number): void;
  ended(outcome: "completed" | "failed", seconds: number): void;
  tokens(prompt: number, completion: number): void;
}

export interface ModelCallMetrics {
  forModel(model: string): ModelCallSeries;
}

/** What the retrying provider reports (src/providers/resilient.ts), bound to a provider. */
export interface UpstreamObserver {
  /** An attempt failed with this code and upstream HTTP status (null: no answer). */
  attemptFailed(code: string, upstreamStatus: number | null): void;
  /** Another attempt will be made. */
  retried(): void;
}

/** Statements on the Postgres pool (postgres.js exposes no pool state: see src/db/client.ts). */
export interface QueryCounter {
  started(): void;
  ended(): void;
}

const QUEUE_STATES = ["waiting", "active", "delayed"] as const;

/** The queue's job counts by state, read at scrape time. */
export type JobCountsReader = () => Promise<Partial<Record<(typeof QUEUE_STATES)[number], number>>>;

/** Distinct models labelled at most; further names share `other` (a prefix route serves any name a client sends). */
const MAX_MODELS = 100;
const OTHER_MODEL = "other";
/** How long a scrape waits for Redis (the queue's counts) before answering without them. */
const DEFAULT_SCRAPE_BOUND_MS = 1_000;

/** Seconds: from 5 ms (a simulator, a cache) to 2 minutes (a long reply). */
const CALL_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const RELAY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class Metrics implements HttpMetrics, ModelCallMetrics {
  readonly registry = new Registry();
  readonly #httpRequests: Counter<"method" | "route" | "status">;
  readonly #httpDuration: Histogram<"method" | "route">;
  readonly #ttft: Histogram<"model">;
  readonly #callDuration: Histogram<"model" | "outcome">;
  readonly #tokens: Counter<"model" | "kind">;
  readonly #models = new Map<string, ModelCallSeries>();
  readonly #upstreamErrors: Counter<"provider" | "code" | "status">;
  readonly #upstreamRetries: Counter<"provider">;
  readonly #jobsInFlight: Gauge<"kind">;
  readonly #relayLag: Histogram;
  readonly #redisErrors: Counter<"connection">;
  readonly #dbQueries: Gauge;
  readonly #dbPoolMax: Gauge;
  readonly #scrapeFailures: Counter<"source">;
  #followers: (() => number) | null = null;
  #jobCounts: JobCountsReader | null = null;
  /** The queue's counts being read for the scrape in progress. */
  #queueRead: Promise<void> = Promise.resolve();
  readonly #scrapeBoundMs: number;

  constructor(opts: { scrapeBoundMs?: number } = {}) {
    this.#scrapeBoundMs = opts.scrapeBoundMs ?? DEFAULT_SCRAPE_BOUND_MS;
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "parley_" });
    this.#httpRequests = new Counter({
      name: "parley_http_requests_total",
      help: "HTTP requests answered, by method, route pattern and status",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.#httpDuration = new Histogram({
      name: "parley_http_request_duration_seconds",
      help: "Time to a request's response (an SSE response: to its headers), by method and route pattern",
      labelNames: ["method", "route"],
      buckets: CALL_BUCKETS,
      registers,
    });
    this.#ttft = new Histogram({
      name: "parley_model_ttft_seconds",
      help: "Time from a model call's start to its first token (retries included), by model",
      labelNames: ["model"],
      buckets: CALL_BUCKETS,
      registers,
    });
    this.#callDuration = new Histogram({
      name: "parley_model_call_duration_seconds",
      help: "Time from a model call's start to its end, by model and outcome",
      labelNames: ["model", "outcome"],
      buckets: CALL_BUCKETS,
      registers,
    });
    this.#tokens = new Counter({
      name: "parley_model_tokens_total",
      help: "Tokens the upstream reported in its usage, by model and kind (prompt, completion)",
      labelNames: ["model", "kind"],
      registers,
    });
    this.#upstreamErrors = new Counter({
      name: "parley_upstream_errors_total",
      help: "Failed upstream attempts (retried or not), by provider, error code and upstream HTTP status (none: no answer)",
      labelNames: ["provider", "code", "status"],
      registers,
    });
    this.#upstreamRetries = new Counter({
      name: "parley_upstream_retries_total",
      help: "Upstream calls tried again after a failure before their first token, by provider",
      labelNames: ["provider"],
      registers,
    });
    this.#jobsInFlight = new Gauge({
      name: "parley_jobs_in_flight",
      help: "Jobs this worker is running, by kind (reply, completion, summary)",
      labelNames: ["kind"],
      registers,
    });
    this.#relayLag = new Histogram({
      name: "parley_relay_lag_seconds",
      help: "Time from a reply event's write to Redis (its stream id) to its write on an SSE response opened before it",
      buckets: RELAY_BUCKETS,
      registers,
    });
    this.#redisErrors = new Counter({
      name: "parley_redis_errors_total",
      help: "Redis connection 'error' events, by connection role",
      labelNames: ["connection"],
      registers,
    });
    this.#dbQueries = new Gauge({
      name: "parley_db_queries_in_flight",
      help: "Postgres statements sent and not yet answered (those queued for a free connection included)",
      registers,
    });
    this.#dbPoolMax = new Gauge({ name: "parley_db_pool_max", help: "Postgres connections the pool may open", registers });
    // Read at scrape time: the hot paths keep no count of their own.
    const metrics = this;
    new Gauge({
      name: "parley_reply_followers",
      help: "Reply followers (SSE responses, waiting appends) this API process holds",
      registers,
      collect() {
        if (metrics.#followers) this.set(metrics.#followers());
      },
    });
    new Gauge({
      name: "parley_queue_jobs",
      help: "Jobs in the model-job queue, by state (waiting, active, delayed); read from Redis at scrape time",
      labelNames: ["state"],
      registers,
      async collect() {
        await (metrics.#queueRead = metrics.#readJobCounts(this));
      },
    });
    // Registered after the queue's gauge, so a scrape that leaves the counts out counts it in its own exposition.
    this.#scrapeFailures = new Counter({
      name: "parley_metrics_scrape_failures_total",
      help: "Values a scrape could not read in time and left out, by source",
      labelNames: ["source"],
      registers,
      async collect() {
        await metrics.#queueRead;
      },
    });
  }

  requestEnded(method: string, route: string, status: number, seconds: number): void {
    this.#httpRequests.labels(method, route, String(status)).inc();
    this.#httpDuration.labels(method, route).observe(seconds);
  }

  forModel(model: string): ModelCallSeries {
    const known = this.#models.get(model);
    if (known) return known;
    if (this.#models.size >= MAX_MODELS && model !== OTHER_MODEL) return this.forModel(OTHER_MODEL);
    const ttft = this.#ttft.labels(model);
    const completed = this.#callDuration.labels(model, "completed");
    const failed = this.#callDuration.labels(model, "failed");
    const prompt = this.#tokens.labels(model, "prompt");
    const completion = this.#tokens.labels(model, "completion");
    const series: ModelCallSeries = {
      ttft: (s) => ttft.observe(s),
      ended: (outcome, s) => (outcome === "completed" ? completed : failed).observe(s),
      tokens(p, c) {
        if (p > 0) prompt.inc(p);
        if (c > 0) completion.inc(c);
      },
    };
    this.#models.set(model, series);
    return series;
  }

  upstream(provider: string): UpstreamObserver {
    const retries = this.#upstreamRetries.labels(provider);
    return {
      attemptFailed: (code, status) => this.#upstreamErrors.labels(provider, code, status === null ? "none" : String(status)).inc(),
      retried: () => retries.inc(),
    };
  }

  /** Counts a job while it runs: call the returned function when it ends. */
  jobStarted(kind: string): () => void {
    const gauge = this.#jobsInFlight.labels(kind);
    gauge.inc();
    return () => gauge.dec();
  }

  relayLag(seconds: number): void {
    this.#relayLag.observe(seconds);
  }

  /** Counts one Redis connection's errors, under its role. */
  redisErrors(connection: string): () => void {
    const counter = this.#redisErrors.labels(connection);
    return () => counter.inc();
  }

  databaseStatements(): QueryCounter {
    const gauge = this.#dbQueries;
    return { started: () => gauge.inc(), ended: () => gauge.dec() };
  }

  databasePoolMax(max: number): void {
    this.#dbPoolMax.set(max);
  }

  watchFollowers(size: () => number): void {
    this.#followers = size;
  }

  watchQueue(read: JobCountsReader): void {
    this.#jobCounts = read;
  }

  async #readJobCounts(queue: Gauge<"state">): Promise<void> {
    const read = this.#jobCounts;
    if (!read) return;
    const counts = await withinBound(read(), this.#scrapeBoundMs).catch(() => null);
    // Counts not read now are left out rather than repeated from an earlier scrape.
    queue.reset();
    if (!counts) return void this.#scrapeFailures.labels("queue").inc();
    for (const state of QUEUE_STATES) queue.labels(state).set(counts[state] ?? 0);
  }

  /** The exposition, and its content type. */
  async expose(): Promise<{ body: string; contentType: string }> {
    return { body: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}

/** `work`'s value, or null once `ms` have passed. */
function withinBound<T>(work: Promise<T>, ms: number): Promise<T | null> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<null>((resolve) => (timer = setTimeout(resolve, ms, null)));
  return Promise.race([work, bound]).finally(() => clearTimeout(timer));
}
