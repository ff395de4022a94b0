import { context, propagation, SpanKind, SpanStatusCode, trace, type Attributes, type Span } from "@opentelemetry/api";

/**
 * The spans Parley makes, through @opentelemetry/api only (the SDK is loaded by tracing.ts, and only
 * when traces are exported). While tracing is off every helper here calls its work directly: no span
 * object, no context switch, nothing on the path of a token.
 */
let on = false;

/** Set once by startTracing, before the app and the worker exist. */
export function setTracingOn(value: boolean): void {
  on = value;
}

export const tracingOn = (): boolean => on;

// A proxy: it delegates to the provider registered later by startTracing.
export const tracer = trace.getTracer("parley");

/**
 * What went wrong, for `error.type`: a code (ProviderError's, a SQLSTATE, a Node error code) or the
 * error's class. Never its message, which may quote content, query parameters or keys.
 */
export function errorType(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code.length > 0 && code.length <= 64) return code;
  if (err instanceof Error) return err.name;
  return "_OTHER";
}

/** Marks the span failed with `type` as its error.type (and no message: see errorType). */
export function markFailed(span: Span, type: string): void {
  span.setAttribute("error.type", type);
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

/** `work` inside an active span that ends with it; a thrown error marks it failed and is rethrown. */
export function inSpan<T>(name: string, kind: SpanKind, attributes: Attributes, work: (span: Span | null) => Promise<T>): Promise<T> {
  if (!on) return work(null);
  return tracer.startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await work(span);
    } catch (err) {
      markFailed(span, errorType(err));
      throw err;
    } finally {
      span.end();
    }
  });
}

/**
 * A Postgres span around one step of the domain (postgres.js has no OTel instrumentation, and a span per
 * tiny query would cost more than it tells): `db <summary>`, e.g. `db append turn`.
 */
export function dbSpan<T>(summary: string, operation: string, table: string, work: () => Promise<T>): Promise<T> {
  if (!on) return work();
  return inSpan(
    `db ${summary}`,
    SpanKind.CLIENT,
    { "db.system.name": "postgresql", "db.operation.name": operation, "db.collection.name": table, "db.query.summary": `${operation} ${table}` },
    () => work(),
  );
}

/** Adds the trace context (W3C traceparent) of the active span to outgoing request headers. */
export function injectTraceContext(headers: Record<string, string>): void {
  if (on) propagation.inject(context.active(), headers);
}
