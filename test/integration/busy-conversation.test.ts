import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { apiClient } from "../support/http.ts";
import { seedApiKeyFor, TEST_API_KEY } from "../support/keys.ts";
import { startTestService, type TestService } from "../support/service.ts";

/** Every request of this file must be answered within this; a hang is a failure, not a slow pass. */
const ANSWER_BOUND_MS = 30_000;

let service: TestService;
beforeAll(async () => {
  service = await startTestService({ RATE_LIMIT_REQUESTS: 10_000 });
});
afterAll(() => service?.stop());

async function post(path: string, body: unknown, apiKey = TEST_API_KEY): Promise<{ status: number; body: any }> {
  const res = await fetch(`${service.url}/v1${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(ANSWER_BOUND_MS),
  });
  return { status: res.status, body: await res.json() };
}

describe("a conversation with a reply in flight", () => {
  it("answers 200 concurrent appends 409 conversation_busy, and keeps serving everyone else", async () => {
    const api = apiClient(`${service.url}/v1`);
    // The reply stays in flight for the whole test: its first token is a minute away.
    const { body: conv } = await api.post("/conversations", { model: "parley-sim-1", params: { simulate: { ttft_ms: 60_000 } } });
    const inFlight = await post(`/conversations/${conv.id}/messages`, { content: "slow one", wait: false });
    expect(inFlight.status).toBe(202);

    const otherKey = await seedApiKeyFor(service.sql, "other-tenant");
    const appends = Array.from({ length: 200 }, (_, i) => post(`/conversations/${conv.id}/messages`, { content: `append ${i}` }));
    // While the 200 are queued, another tenant is served.
    const other = await post("/conversations", { title: "elsewhere" }, otherKey);
    expect(other.status).toBe(201);

    const answers = await Promise.all(appends);
    const statuses = answers.reduce<Record<number, number>>((n, a) => ({ ...n, [a.status]: (n[a.status] ?? 0) + 1 }), {});
    expect(statuses).toEqual({ 409: 200 });
    for (const a of answers) {
      expect(a.body.error).toMatchObject({ code: "conversation_busy" });
      expect(a.body.error.message).toContain(inFlight.body.reply.id);
    }

    const ready = await fetch(`${service.url}/readyz`, { signal: AbortSignal.timeout(ANSWER_BOUND_MS) });
    expect(ready.status).toBe(200);
    const [stuck] = await service.sql`
      select count(*)::int as n from pg_stat_activity
      where datname = current_database() and state like 'idle in transaction%'`;
    expect(stuck?.n).toBe(0);
    // Only the reply in flight holds a slot, so a new turn elsewhere is accepted (not 429).
    const { body: conv2 } = await api.post("/conversations", { model: "parley-sim-1" });
    expect((await post(`/conversations/${conv2.id}/messages`, { content: "hello", wait: false })).status).toBe(202);

    await api.post(`/conversations/${conv.id}/messages/${inFlight.body.reply.id}/cancel`);
  });

  it("gives the tenant's reply slot back when the turn is refused after taking it", async () => {
    const key = await seedApiKeyFor(service.sql, "slot-tenant");
    const api = apiClient(`${service.url}/v1`, key);
    const { body: conv } = await api.post("/conversations", { model: "parley-sim-1", context_strategy: "strict" });
    // Too large for the simulator's window: refused inside the transaction, after the slot was taken.
    const refused = await post(`/conversations/${conv.id}/messages`, { content: "word ".repeat(20_000), wait: false }, key);
    expect(refused.status).toBe(400);
    const redis = new Redis(inject("redisUrl"));
    try {
      expect(await redis.zcard(`${service.config.REDIS_PREFIX}:reply-slots:slot-tenant`)).toBe(0);
    } finally {
      redis.disconnect();
    }
  });
});
