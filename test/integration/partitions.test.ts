import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { postForEvents } from "../support/http.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { startTestService, startTestServiceBehindPgProxy, type TestServiceBehindPgProxy, type TestService } from "../support/service.ts";
import { startTcpProxyFor, type TcpProxy } from "../support/tcp-proxy.ts";
import { eventually } from "../support/waiting.ts";

/**
 * A partition (connections open, nothing answered) between the API and
 * Postgres or Redis: requests are answered quickly, never held for the
 * partition's length. The bounds are small here; the waits allowed are generous.
 */
const REQUEST_TIMEOUT_MS = 1500;
const ANSWER_BOUND_MS = 20_000;

async function call(url: string, init: { method?: string; body?: unknown } = {}) {
  const res = await fetch(url, {
    method: init.method ?? "GET",
    headers: { authorization: `Bearer ${TEST_API_KEY}`, ...(init.body ? { "content-type": "application/json" } : {}) },
    body: init.body ? JSON.stringify(init.body) : undefined,
    signal: AbortSignal.timeout(ANSWER_BOUND_MS),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

describe("Postgres partitioned away", () => {
  let service: TestServiceBehindPgProxy;
  let proxy: TcpProxy;
  beforeAll(async () => {
    service = await startTestServiceBehindPgProxy({ REQUEST_TIMEOUT_MS });
    proxy = service.pgProxy;
  });
  afterAll(() => service?.stop());

  it("answers 503 with Retry-After at the request deadline, and serves again once it heals", async () => {
    const v1 = `${service.url}/v1`;
    // The key is now remembered in Redis: the requests below get past the key check without Postgres.
    expect((await call(`${v1}/conversations`)).status).toBe(200);
    proxy.blackhole();
    for (const res of [await call(`${v1}/conversations`), await call(`${v1}/conversations`, { method: "POST", body: { title: "during" } })]) {
      expect(res.status).toBe(503);
      expect(res.body.error).toMatchObject({ type: "server_error", code: "service_unavailable" });
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    }
    proxy.heal();
    await eventually(async () => (await call(`${v1}/conversations`)).status === 200, { what: "the API answers again", timeoutMs: ANSWER_BOUND_MS });
    expect((await call(`${v1}/conversations`, { method: "POST", body: { title: "after" } })).status).toBe(201);
  });
});

describe("Redis partitioned away", () => {
  let proxy: TcpProxy;
  let service: TestService;
  beforeAll(async () => {
    const front = await startTcpProxyFor(inject("redisUrl"));
    proxy = front.proxy;
    // A deadline shorter than two Redis timeouts: a read is answered only if the key check and the rate
    // limit do not both wait Redis out.
    service = await startTestService({ REDIS_URL: front.url, REQUEST_TIMEOUT_MS: 2000, REDIS_COMMAND_TIMEOUT_MS: 1200 });
  });
  afterAll(async () => {
    proxy?.heal();
    await service?.stop();
    await proxy?.close();
  });

  it("checks keys in Postgres on a Redis timeout, answers what needs no Redis, and 503s what does", async () => {
    const v1 = `${service.url}/v1`;
    const { body: conv } = await call(`${v1}/conversations`, { method: "POST", body: { title: "before" } });
    proxy.blackhole();
    // The key check times out on Redis and asks Postgres; the rate limit then counts in memory without
    // waiting on Redis too, and so do the next requests for a moment.
    for (let i = 0; i < 4; i++) {
      const read = await call(`${v1}/conversations/${conv.id}`);
      expect(read.status).toBe(200);
      expect(read.body.id).toBe(conv.id);
    }
    expect((await call(`${v1}/conversations`, { method: "POST", body: { title: "during" } })).status).toBe(201);
    // A turn needs Redis (its reply slot, its event stream, its job): refused, not held.
    const turn = await call(`${v1}/conversations/${conv.id}/messages`, { method: "POST", body: { content: "hi", wait: false } });
    expect(turn.status).toBe(503);
    expect(turn.body.error).toMatchObject({ code: "service_unavailable" });
    expect(Number(turn.headers.get("retry-after"))).toBeGreaterThan(0);
    proxy.heal();
    await eventually(async () => (await fetch(`${service.url}/readyz`)).status === 200, { what: "ready again", timeoutMs: ANSWER_BOUND_MS });
    // The refused turn was rolled back, though its transaction outlived its answer.
    await eventually(async () => {
      const [open] = await service.sql`
        select count(*)::int as n from pg_stat_activity
        where datname = current_database() and application_name = 'parley' and state like '%transaction%'`;
      return open?.n === 0;
    }, { what: "no transaction left open", timeoutMs: ANSWER_BOUND_MS });
    expect(await service.sql`select 1 from messages where conversation_id = ${conv.id}`).toHaveLength(0);
    const after = await call(`${v1}/conversations/${conv.id}/messages`, { method: "POST", body: { content: "hi again" } });
    expect(after.status).toBe(201);
    expect(after.body.reply.status).toBe("completed");
  });
});

describe("the request deadline", () => {
  let service: TestService;
  beforeAll(async () => {
    service = await startTestService({ REQUEST_TIMEOUT_MS: 1000 });
  });
  afterAll(() => service?.stop());

  it("does not cut a request waiting for a model's reply once its turn is stored", async () => {
    const v1 = `${service.url}/v1`;
    const { body: conv } = await call(`${v1}/conversations`, { method: "POST", body: { params: { simulate: { ttft_ms: 2500 } } } });
    const waited = await call(`${v1}/conversations/${conv.id}/messages`, { method: "POST", body: { content: "take your time" } });
    expect(waited.status).toBe(201);
    expect(waited.body.reply.status).toBe("completed");
  });

  it("does not cut a stream that has started", async () => {
    const v1 = `${service.url}/v1`;
    const { body: conv } = await call(`${v1}/conversations`, { method: "POST", body: { params: { simulate: { ttft_ms: 2500 } } } });
    const streamed = await postForEvents(`${v1}/conversations/${conv.id}/messages`, { content: "stream it", stream: true });
    expect(streamed.status).toBe(200);
    expect(streamed.events.at(-2)?.event).toBe("message.completed");
    expect(streamed.events.at(-1)?.event).toBe("done");
  });
});
