import { context, propagation, ROOT_CONTEXT, SpanKind, trace, type TextMapGetter } from "@opentelemetry/api";
import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
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
      // The route of the handler that answered (Hono's routeIndex points at it once next() returns).
      const route = routePath(c);
      span.updateName(`${method} ${route}`);
      span.setAttribute("http.route", route);
      const status = c.res.status;
      span.setAttribute("http.response.status_code", status);
      if (status >= 500) markFailed(span, String(status));
      span.end();
    }
  };
}
