import { context, propagation, ROOT_CONTEXT, SpanKind, trace, type TextMapGetter } from "@opentelemetry/api";
import type { MiddlewareHandler } from "hono";
import { routeLabel } from "./http.ts";
import { markFailed, tracer, tracingOn } from "./spans.ts";

const fromHeaders: TextMapGetter<Headers> = {
  get: (headers, key) => headers.get(key) ?? undefined,
  keys: (headers) => [...headers.keys()],
};

/**
 * A server span per request, `METHOD /route/pattern`, continuing the caller's trace when it sends a
 * W3C traceparent. It ends when the handler has answered: for a stream, once its headers are sent
 * (the reply's own spans are the worker's). Off: a middleware that only calls the next.
 */
export function traceRequests(): MiddlewareHandler {
  if (!tracingOn()) return (_c, next) => next();
  return async (c, next) => {
    const method = c.req.method;
    const parent = propagation.extract(ROOT_CONTEXT, c.req.raw.headers, fromHeaders);
    const span = tracer.startSpan(
      method,
      { kind: SpanKind.SERVER, attributes: { "http.request.method": method, "url.path": c.req.path, "url.scheme": "http" } },
      parent,
    );
    try {
      await context.with(trace.setSpan(parent, span), next);
    } finally {
      // The route pattern of the endpoint that answered, as the metrics label it.
      const route = routeLabel(c);
      span.updateName(`${method} ${route}`);
      span.setAttribute("http.route", route);
      const status = c.res.status;
      span.setAttribute("http.response.status_code", status);
      if (status >= 500) markFailed(span, String(status));
      span.end();
    }
  };
}
