import type { Telemetry } from "bullmq";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { setTracingOn } from "./spans.ts";

/** Traces as this process exports them; all of it inert when no OTLP endpoint is set. */
export interface Tracing {
  /** BullMQ's telemetry for the queue and the worker (a job carries its producer's trace context); undefined when off. */
  queueTelemetry: Telemetry | undefined;
  /** Sends the spans still held and stops exporting, waiting at most `ms` (a collector away must not hold a stop). */
  shutdown(ms: number): Promise<void>;
}

const OFF: Tracing = { queueTelemetry: undefined, shutdown: async () => {} };

/** Where spans go: the traces endpoint as given, else `<OTEL_EXPORTER_OTLP_ENDPOINT>/v1/traces` (as the OTel spec says); null: off. */
export function tracesUrl(config: Config): string | null {
  if (config.OTEL_SDK_DISABLED) return null;
  if (config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) return config.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  if (config.OTEL_EXPORTER_OTLP_ENDPOINT) return `${config.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/+$/, "")}/v1/traces`;
  return null;
}

/** `key=value,key2=value2` as OTEL_EXPORTER_OTLP_HEADERS spells it (values URL-encoded). */
export function parseOtlpHeaders(raw: string | undefined): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const pair of raw?.split(",") ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) continue;
    headers[decodeURIComponent(pair.slice(0, at).trim())] = decodeURIComponent(pair.slice(at + 1).trim());
  }
  return headers;
}

type Sampler = import("@opentelemetry/sdk-trace-base").Sampler;

/**
 * BullMQ's worker makes root spans of its own for its housekeeping (`startStalledCheckTimer`, and
 * `moveStalledJobsToWait` every WORKER_STALLED_CHECK_MS, in every worker): traces of one span that say nothing about a turn.
 * Root spans of kind INTERNAL are not recorded; Parley's own internal spans (`job …`) always have a parent
 * (BullMQ's consumer span).
 */
function withoutHousekeeping(api: typeof import("@opentelemetry/api"), base: typeof import("@opentelemetry/sdk-trace-base"), sampler: Sampler): Sampler {
  return {
    shouldSample(ctx, traceId, name, kind, attributes, links) {
      if (kind === api.SpanKind.INTERNAL && !api.trace.getSpanContext(ctx)) return { decision: base.SamplingDecision.NOT_RECORD };
      return sampler.shouldSample(ctx, traceId, name, kind, attributes, links);
    },
    toString: () => `WithoutHousekeeping{${sampler.toString()}}`,
  };
}

const defaultServiceName = { all: "parley", api: "parley-api", worker: "parley-worker" } as const;

/**
 * Starts exporting spans over OTLP/HTTP (JSON) when an endpoint is configured: a NodeTracerProvider
 * registered globally (AsyncLocalStorage context, W3C trace context), spans batched. Without one nothing
 * is registered and the SDK is never imported, so @opentelemetry/api's no-op tracer is all there is.
 */
export async function startTracing(config: Config, log: Logger): Promise<Tracing> {
  const url = tracesUrl(config);
  if (!url) return OFF;
  const [{ NodeTracerProvider }, base, { OTLPTraceExporter }, { resourceFromAttributes }, { BullMQOtel }, api] = await Promise.all([
    import("@opentelemetry/sdk-trace-node"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
    import("bullmq-otel"),
    import("@opentelemetry/api"),
  ]);
  // The SDK reports failed exports through diag; a collector away is worth a warning, not silence.
  api.diag.setLogger(
    {
      error: (message) => log.warn({ otel: message }, "trace export problem"),
      warn: (message) => log.warn({ otel: message }, "trace export problem"),
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    api.DiagLogLevel.WARN,
  );
  const serviceName = config.OTEL_SERVICE_NAME ?? defaultServiceName[config.ROLE];
  const timeoutMillis = config.OTEL_EXPORTER_OTLP_TIMEOUT;
  const exporter = new OTLPTraceExporter({ url, headers: parseOtlpHeaders(config.OTEL_EXPORTER_OTLP_HEADERS), timeoutMillis });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": serviceName, "service.version": "0.1.0" }),
    sampler: withoutHousekeeping(api, base, new base.ParentBasedSampler({ root: new base.TraceIdRatioBasedSampler(config.OTEL_TRACES_SAMPLER_ARG) })),
    spanProcessors: [
      new base.BatchSpanProcessor(exporter, {
        scheduledDelayMillis: config.OTEL_BSP_SCHEDULE_DELAY,
        maxQueueSize: config.OTEL_BSP_MAX_QUEUE_SIZE,
        maxExportBatchSize: Math.min(512, config.OTEL_BSP_MAX_QUEUE_SIZE),
        exportTimeoutMillis: timeoutMillis,
      }),
    ],
  });
  provider.register();
  setTracingOn(true);
  log.info({ url, serviceName }, "exporting traces over OTLP");
  return {
    queueTelemetry: new BullMQOtel({ tracerName: "parley" }),
    async shutdown(ms) {
      await Promise.race([provider.shutdown().catch(() => {}), new Promise((r) => setTimeout(r, ms).unref())]);
      setTracingOn(false);
    },
  };
}
