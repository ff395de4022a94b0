import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { startFakeCollector, type FakeCollector, type ReceivedSpan } from "../support/otlp-collector.ts";
import { startFakeUpstream } from "../support/fake-upstream.ts";
import { apiClient } from "../support/http.ts";
import { seedTestApiKey } from "../support/keys.ts";
import { useParleyProcesses, waitForOutput, type ParleyProcess } from "../support/processes.ts";

/**
 * Traces, end to end: Parley's API and worker as processes of their own (dist/), exporting to a fake
 * OTLP/HTTP collector, a turn through the fake upstream and one through the simulator.
 */
const processes = useParleyProcesses();
const upstream = await startFakeUpstream();
const collectors: FakeCollector[] = [];
afterAll(async () => {
  await upstream.close();
  for (const c of collectors) await c.close();
});

const reportModules = `--import=${fileURLToPath(new URL("../support/report-otel-modules.ts", import.meta.url))}`;
const SDK_MODULES = ["/@opentelemetry/sdk-trace-node/", "/@opentelemetry/sdk-trace-base/", "/@opentelemetry/exporter-trace-otlp-http/"];
const loadedSdk = (p: ParleyProcess) => SDK_MODULES.filter((m) => p.output().split("\n").some((l) => l.startsWith("loaded-module ") && l.includes(m)));

async function collector(answer: "ok" | "never" = "ok") {
  const c = await startFakeCollector({ answer });
  collectors.push(c);
  return c;
}

/** API and worker processes on a database of their own, the fake upstream serving `fake-model`. */
async function startApiAndWorker(extra: Record<string, string>) {
  const { database, env } = await processes.environment({
    SIMULATOR_TTFT_MS: "0",
    SIMULATOR_TOKENS_PER_SECOND: "500",
    UPSTREAMS: JSON.stringify([{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }]),
    NODE_OPTIONS: reportModules,
    ...extra,
  });
  const api = processes.start({ ...env, ROLE: "api" });
  const worker = processes.start({ ...env, ROLE: "worker" });
  await Promise.all([waitForOutput(api, "api listening"), waitForOutput(worker, "worker started")]);
  await seedTestApiKey(database.sql);
  return { api, worker, database, client: apiClient(`http://127.0.0.1:${env.PORT}/v1`) };
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const one = (spans: ReceivedSpan[], name: string) => {
  const found = spans.filter((s) => s.name === name);
  expect(found.map((s) => s.name), `exactly one span '${name}' in ${spans.map((s) => s.name).join(", ")}`).toEqual([name]);
  return found[0]!;
};

async function storedReply(sql: postgres.Sql, conversationId: string) {
  const [row] = await sql`select id, model, usage, finish_reason from messages where conversation_id = ${conversationId} and role = 'assistant' order by seq desc limit 1`;
  return row as { id: string; model: string; usage: { prompt_tokens: number; completion_tokens: number }; finish_reason: string };
}

// Up to four processes start per test on a shared, loaded machine.
describe("traces", { timeout: 180_000 }, () => {
  it("follows a turn in one trace: HTTP → Postgres → queue → worker → upstream, with the GenAI attributes of the stored reply", async () => {
    const otlp = await collector();
    const { api, worker, database, client } = await startApiAndWorker({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      UPSTREAM_RETRY_BASE_MS: "10",
    });
    expect(loadedSdk(api)).toEqual(SDK_MODULES);
    expect(loadedSdk(worker)).toEqual(SDK_MODULES);

    const { body: conv } = await client.post("/conversations", { model: "fake-model" });
    upstream.reset();
    const turn = await client.post(`/conversations/${conv.id}/messages`, { content: "trace me" });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");

    // The turn's trace: the one of its HTTP span.
    const route = "POST /v1/conversations/:conversation_id/messages";
    const http = await waitFor("the turn's HTTP span", () => otlp.spans.find((s) => s.name === route));
    const inTrace = () => otlp.spans.filter((s) => s.traceId === http.traceId);
    // BullMQ's consumer span ends last, once the job is marked completed.
    await waitFor("the worker's consumer span in the trace", () => inTrace().find((s) => s.name === "process completions"));
    const spans = inTrace();

    expect(http.service).toBe("parley-api");
    expect(http.kind).toBe(2); // SERVER
    expect(http.parentSpanId).toBe("");
    expect(http.attributes).toMatchObject({ "http.request.method": "POST", "http.route": "/v1/conversations/:conversation_id/messages", "http.response.status_code": 201 });
    // The API's side, under the HTTP span.
    for (const name of ["db read turn state", "db append turn", "add completions.reply"]) {
      const s = one(spans, name);
      expect(s.service).toBe("parley-api");
      expect(s.parentSpanId).toBe(http.spanId);
    }
    expect(one(spans, "db append turn").attributes).toMatchObject({ "db.system.name": "postgresql", "db.operation.name": "INSERT" });
    // The worker's side: BullMQ's consumer span continues the producer's, then the job, its statements and the model call.
    const producer = one(spans, "add completions.reply");
    const consumer = one(spans, "process completions");
    expect(consumer.service).toBe("parley-worker");
    expect(consumer.parentSpanId).toBe(producer.spanId);
    const job = one(spans, "job reply");
    expect(job.parentSpanId).toBe(consumer.spanId);
    expect(job.attributes).toMatchObject({ "parley.job.kind": "reply", "parley.job.id": turn.body.reply.id });
    for (const name of ["db start reply attempt", "db read history", "chat fake-model", "db finish reply"]) {
      const s = one(spans, name);
      expect(s.service).toBe("parley-worker");
      expect(s.parentSpanId).toBe(job.spanId);
    }

    // The model call's span says what is stored.
    const stored = await storedReply(database.sql, conv.id);
    expect(stored.id).toBe(turn.body.reply.id);
    const chat = one(spans, "chat fake-model");
    expect(chat.kind).toBe(3); // CLIENT
    expect(chat.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "upstream:fake",
      "gen_ai.request.model": stored.model,
      "gen_ai.conversation.id": conv.id,
      "gen_ai.usage.input_tokens": stored.usage.prompt_tokens,
      "gen_ai.usage.output_tokens": stored.usage.completion_tokens,
      "gen_ai.response.finish_reasons": [stored.finish_reason],
    });
    expect(stored.usage.completion_tokens).toBeGreaterThan(0);

    // The upstream was called inside that span: its request carried the trace.
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0]!.headers.traceparent).toBe(`00-${chat.traceId}-${chat.spanId}-01`);

    // The simulator's turns are traced alike (no HTTP call to carry the context).
    const { body: simConv } = await client.post("/conversations", { model: "parley-sim-1" });
    const simTurn = await client.post(`/conversations/${simConv.id}/messages`, { content: "and me", params: { simulate: { reply_tokens: 4 } } });
    expect(simTurn.body.reply.status).toBe("completed");
    const simStored = await storedReply(database.sql, simConv.id);
    const simChat = await waitFor("the simulator's chat span", () => otlp.spans.find((s) => s.attributes["gen_ai.conversation.id"] === simConv.id));
    expect(simChat.name).toBe("chat parley-sim-1");
    expect(simChat.attributes).toMatchObject({
      "gen_ai.provider.name": "simulator",
      "gen_ai.request.model": simStored.model,
      "gen_ai.usage.input_tokens": simStored.usage.prompt_tokens,
      "gen_ai.usage.output_tokens": simStored.usage.completion_tokens,
    });
    // The API's span may come in a later batch than the worker's.
    const simHttp = await waitFor("the simulator turn's HTTP span", () => otlp.spans.find((s) => s.traceId === simChat.traceId && s.name === route));
    expect(simHttp.service).toBe("parley-api");

    // A stateless chat completion's model call is in its request's trace too.
    upstream.reset();
    const completion = await client.post("/chat/completions", { model: "fake-model", messages: [{ role: "user", content: "stateless" }] });
    expect(completion.status).toBe(200);
    const completionHttp = await waitFor("the completion's HTTP span", () => otlp.spans.find((s) => s.name === "POST /v1/chat/completions"));
    const completionChat = await waitFor("the completion's chat span", () =>
      otlp.spans.find((s) => s.name === "chat fake-model" && s.traceId === completionHttp.traceId),
    );
    expect(completionChat.attributes).toMatchObject({
      "gen_ai.usage.input_tokens": completion.body.usage.prompt_tokens,
      "gen_ai.usage.output_tokens": completion.body.usage.completion_tokens,
      "gen_ai.response.finish_reasons": [completion.body.choices[0].finish_reason],
    });
    expect(upstream.requests[0]!.headers.traceparent).toBe(`00-${completionChat.traceId}-${completionChat.spanId}-01`);

    // A retry is an event on the model call's span; a failed call marks it with its error.type.
    upstream.queueBehaviour({ kind: "status", status: 503 });
    const retried = await client.post(`/conversations/${conv.id}/messages`, { content: "after a 503" });
    expect(retried.body.reply.status).toBe("completed");
    const retriedChat = await waitFor("the retried call's span", () =>
      otlp.spans.find((s) => s.name === "chat fake-model" && s.traceId !== chat.traceId && s.events.length > 0),
    );
    expect(retriedChat.events).toEqual([{ name: "gen_ai.retry", attributes: expect.objectContaining({ "parley.retry.attempt": 1, "error.type": "upstream_error" }) }]);
    upstream.queueBehaviour({ kind: "status", status: 400 });
    const refused = await client.post(`/conversations/${conv.id}/messages`, { content: "refused" });
    expect(refused.body.reply.status).toBe("failed");
    const failedChat = await waitFor("the failed call's span", () =>
      otlp.spans.find((s) => s.name === "chat fake-model" && s.attributes["error.type"] !== undefined),
    );
    expect(failedChat.attributes["error.type"]).toBe(refused.body.reply.error.code);
    expect(failedChat.status.code).toBe(2); // ERROR

    // A caller's traceparent is continued: the HTTP span is its child.
    const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const continued = await client.get(`/conversations/${conv.id}`, { traceparent: `00-${callerTrace}-00f067aa0ba902b7-01` });
    expect(continued.status).toBe(200);
    const child = await waitFor("the continued request's span", () => otlp.spans.find((s) => s.traceId === callerTrace));
    expect(child.name).toBe("GET /v1/conversations/:conversation_id");
    expect(child.parentSpanId).toBe("00f067aa0ba902b7");

    // BullMQ's housekeeping (a root span per stalled-job check) is not exported.
    expect(otlp.spans.filter((s) => s.parentSpanId === "" && s.kind === 1).map((s) => s.name)).toEqual([]);
    expect(otlp.spans.some((s) => s.name.startsWith("getNextJob") || s.name.startsWith("moveStalledJobsToWait"))).toBe(false);

    // Stopping flushes and exits.
    api.child.kill("SIGTERM");
    worker.child.kill("SIGTERM");
    expect(await api.exited).toBe(0);
    expect(await worker.exited).toBe(0);
  });

  it("with no endpoint set sends nothing, propagates nothing and never loads the SDK", async () => {
    const otlp = await collector();
    // OTEL_SDK_DISABLED wins over an endpoint: the collector is reachable and still hears nothing.
    const off = await startApiAndWorker({ OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url, OTEL_SDK_DISABLED: "true", OTEL_BSP_SCHEDULE_DELAY: "100" });
    const none = await startApiAndWorker({});
    for (const { client } of [off, none]) {
      const { body: conv } = await client.post("/conversations", { model: "fake-model" });
      upstream.reset();
      const turn = await client.post(`/conversations/${conv.id}/messages`, { content: "untraced" });
      expect(turn.body.reply.status).toBe("completed");
      expect(upstream.requests).toHaveLength(1);
      expect(upstream.requests[0]!.headers.traceparent).toBeUndefined();
    }
    for (const p of [off.api, off.worker, none.api, none.worker]) {
      expect(loadedSdk(p)).toEqual([]);
      expect(p.output()).not.toContain("exporting traces");
    }
    // Longer than a few export periods.
    await new Promise((r) => setTimeout(r, 1_000));
    expect(otlp.requests).toBe(0);
  });

  it("with the collector hanging, turns complete and the service stops within its bound", async () => {
    const otlp = await collector("never");
    const { api, worker, client } = await startApiAndWorker({
      OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
      OTEL_BSP_SCHEDULE_DELAY: "100",
      OTEL_EXPORTER_OTLP_TIMEOUT: "1000",
    });
    const { body: conv } = await client.post("/conversations", { model: "parley-sim-1" });
    for (let i = 0; i < 5; i++) {
      const turn = await client.post(`/conversations/${conv.id}/messages`, { content: `turn ${i}`, params: { simulate: { reply_tokens: 3 } } });
      expect(turn.status).toBe(201);
      expect(turn.body.reply.status).toBe("completed");
    }
    await waitFor("an export attempt", () => (otlp.requests > 0 ? true : undefined));
    api.child.kill("SIGTERM");
    worker.child.kill("SIGTERM");
    // Generous: the flush at stop waits at most min(OTEL_EXPORTER_OTLP_TIMEOUT, 5 s).
    const exited = await Promise.race([Promise.all([api.exited, worker.exited]), new Promise((r) => setTimeout(() => r("still running"), 30_000))]);
    expect(exited).toEqual([0, 0]);
  });
});
