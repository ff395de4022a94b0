import { createServer, type ServerResponse } from "node:http";
import { listenOnLoopback } from "./loopback-server.ts";

/** One span as a fake collector received it over OTLP/HTTP JSON, attributes flattened. */
export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  events: { name: string; attributes: Record<string, unknown> }[];
  status: { code?: number; message?: string };
}

export interface FakeCollector {
  /** Base URL, as OTEL_EXPORTER_OTLP_ENDPOINT takes it (the exporter appends /v1/traces). */
  url: string;
  spans: ReceivedSpan[];
  /** Export requests received (any path, any body). */
  requests: number;
  close(): Promise<void>;
}

type AnyValue = { stringValue?: string; intValue?: number | string; doubleValue?: number; boolValue?: boolean; arrayValue?: { values?: AnyValue[] } };

function valueOf(v: AnyValue | undefined): unknown {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(valueOf);
  return undefined;
}

const flatten = (attributes: { key: string; value: AnyValue }[] | undefined) =>
  Object.fromEntries((attributes ?? []).map((a) => [a.key, valueOf(a.value)]));

/**
 * A fake OpenTelemetry collector over real HTTP: takes POST /v1/traces as OTLP/HTTP JSON (what
 * @opentelemetry/exporter-trace-otlp-http sends) and keeps every span. `answer: "never"` takes the
 * requests and never answers: a collector that hangs.
 */
export async function startFakeCollector(opts: { answer?: "ok" | "never" } = {}): Promise<FakeCollector> {
  const spans: ReceivedSpan[] = [];
  const hanging = new Set<ServerResponse>();
  const state = { requests: 0 };
  const server = createServer(async (req, res) => {
    state.requests++;
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    if (opts.answer === "never") return void hanging.add(res);
    if (req.method !== "POST" || req.url !== "/v1/traces" || !req.headers["content-type"]?.includes("json")) {
      res.writeHead(415).end();
      return;
    }
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as any;
    for (const rs of body.resourceSpans ?? []) {
      const service = String(flatten(rs.resource?.attributes)["service.name"]);
      for (const ss of rs.scopeSpans ?? []) {
        for (const s of ss.spans ?? []) {
          spans.push({
            service,
            traceId: s.traceId,
            spanId: s.spanId,
            parentSpanId: s.parentSpanId ?? "",
            name: s.name,
            kind: s.kind,
            attributes: flatten(s.attributes),
            events: (s.events ?? []).map((e: any) => ({ name: e.name, attributes: flatten(e.attributes) })),
            status: s.status ?? {},
          });
        }
      }
    }
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
  const { port, close } = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    get requests() {
      return state.requests;
    },
    close,
  };
}
