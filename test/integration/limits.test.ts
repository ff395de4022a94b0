import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { apiClient, authedFetch } from "../support/http.ts";
import { seedApiKeyFor } from "../support/keys.ts";
import { startTestService, type TestService } from "../support/service.ts";

/** A test service and a second API instance (no worker) on the same Postgres and Redis. */
async function startPair(overrides: Parameters<typeof startTestService>[0]) {
  const service = await startTestService(overrides);
  const second = await startService({ ...service.config, ROLE: "api", PORT: 0 }, createLogger("silent"));
  return {
    service,
    urls: [`${service.url}/v1`, `${second.url}/v1`] as const,
    async stop() {
      await second.stop();
      await service.stop();
    },
  };
}
type Pair = Awaited<ReturnType<typeof startPair>>;

/** What a tenant has stored, to show a refused request changed nothing. */
async function storedFor(service: TestService, tenant: string) {
  return service.sql`
    select c.id, c.title, c.metadata, c.updated_at, m.id as message_id, m.content, m.status
    from conversations c left join messages m on m.conversation_id = c.id
    where c.tenant_id = ${tenant} order by c.id, m.seq`;
}

describe("the per-key request rate, shared by two API instances", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair({ RATE_LIMIT_REQUESTS: 5, RATE_LIMIT_WINDOW_SECONDS: 60 });
  });
  afterAll(() => pair?.stop());

  it("counts requests on either instance against one budget, then answers 429 with Retry-After and x-ratelimit-*", async () => {
    const key = await seedApiKeyFor(pair.service.sql, "rate");
    const clients = pair.urls.map((url) => apiClient(url, key));
    const remaining: string[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await clients[i % 2]!.get("/models");
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ratelimit-limit-requests")).toBe("5");
      remaining.push(res.headers.get("x-ratelimit-remaining-requests")!);
    }
    expect(remaining).toEqual(["4", "3", "2", "1", "0"]);

    for (const client of clients) {
      const refused = await client.post("/conversations", { title: "over the limit" });
      expect(refused.status).toBe(429);
      expect(refused.body).toEqual({
        error: { message: expect.stringContaining("RATE_LIMIT_REQUESTS"), type: "rate_limit_error", param: null, code: "rate_limit_exceeded" },
      });
      const retryAfter = Number(refused.headers.get("retry-after"));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(60);
      expect(Number(refused.headers.get("retry-after-ms"))).toBeGreaterThan((retryAfter - 1) * 1000);
      expect(refused.headers.get("x-ratelimit-limit-requests")).toBe("5");
      expect(refused.headers.get("x-ratelimit-remaining-requests")).toBe("0");
      expect(refused.headers.get("x-ratelimit-reset-requests")).toBe(`${retryAfter}s`);
    }
    expect(await storedFor(pair.service, "rate")).toEqual([]);
  });

  it("is per key: another key of the same tenant keeps its own budget", async () => {
    const spent = await seedApiKeyFor(pair.service.sql, "shared-tenant");
    const fresh = await seedApiKeyFor(pair.service.sql, "shared-tenant");
    for (let i = 0; i < 5; i++) expect((await apiClient(pair.urls[0], spent).get("/models")).status).toBe(200);
    expect((await apiClient(pair.urls[1], spent).get("/models")).status).toBe(429);
    const other = await apiClient(pair.urls[1], fresh).get("/models");
    expect(other.status).toBe(200);
    expect(other.headers.get("x-ratelimit-remaining-requests")).toBe("4");
  });

  it("does not count requests without a valid key against anyone", async () => {
    const key = await seedApiKeyFor(pair.service.sql, "untouched");
    for (let i = 0; i < 8; i++) expect((await fetch(`${pair.urls[0]}/models`)).status).toBe(401);
    expect((await apiClient(pair.urls[0], key).get("/models")).headers.get("x-ratelimit-remaining-requests")).toBe("4");
  });
});

describe("replies in flight per tenant, shared by two API instances", () => {
  let pair: Pair;
  beforeAll(async () => {
    pair = await startPair({ MAX_CONCURRENT_REPLIES: 2 });
  });
  afterAll(() => pair?.stop());

  // Replies that wait a minute for their first token, so they stay in flight until cancelled.
  const held = { simulate: { ttft_ms: 60_000 } };

  it("answers 429 for a third reply on either instance and for stateless completions, stores nothing for it, and frees the slot when a reply ends", async () => {
    const key = await seedApiKeyFor(pair.service.sql, "busy");
    const [one, two] = pair.urls.map((url) => apiClient(url, key)) as [ReturnType<typeof apiClient>, ReturnType<typeof apiClient>];
    const conversations: string[] = [];
    for (let i = 0; i < 3; i++) conversations.push((await one.post("/conversations", { params: held })).body.id);

    const first = await one.post(`/conversations/${conversations[0]}/messages`, { content: "first", wait: false });
    // A turn refused for its conversation (busy) gives back the slot it asked for while the conversation was
    // read: the tenant's second slot is still free for the next turn.
    const busy = await two.post(`/conversations/${conversations[0]}/messages`, { content: "again", wait: false });
    expect(busy.status).toBe(409);
    const second = await two.post(`/conversations/${conversations[1]}/messages`, { content: "second", wait: false });
    expect([first.status, second.status]).toEqual([202, 202]);
    // With every slot taken, what is wrong with the conversation is still what the answer says: 409, 404.
    expect((await one.post(`/conversations/${conversations[0]}/messages`, { content: "again", wait: false })).body.error.code).toBe("conversation_busy");
    expect((await one.post("/conversations/conv_00000000000000000000000000/messages", { content: "nowhere", wait: false })).status).toBe(404);

    // The held replies move from queued to in_progress meanwhile; what matters is which messages exist.
    const messageIds = async () => (await storedFor(pair.service, "busy")).map((row) => row.message_id);
    const before = await messageIds();
    for (const client of [one, two]) {
      const refused = await client.post(`/conversations/${conversations[2]}/messages`, { content: "third", wait: false });
      expect(refused.status).toBe(429);
      expect(refused.body.error).toEqual({
        message: expect.stringContaining("MAX_CONCURRENT_REPLIES"),
        type: "rate_limit_error",
        param: null,
        code: "concurrency_limit_exceeded",
      });
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(refused.headers.get("x-ratelimit-limit-replies")).toBe("2");
      expect(refused.headers.get("x-ratelimit-remaining-replies")).toBe("0");
    }
    const stateless = await two.post("/chat/completions", { model: "parley-sim-1", messages: [{ role: "user", content: "hi" }] });
    expect(stateless.status).toBe(429);
    expect(stateless.body.error.code).toBe("concurrency_limit_exceeded");
    const bound = await one.post(`/conversations/${conversations[2]}/chat/completions`, { model: "parley-sim-1", messages: [{ role: "user", content: "hi" }] });
    expect(bound.status).toBe(429);
    // Nothing of the refused turns was stored: no user message, no reply.
    expect(await messageIds()).toEqual(before);

    // Another tenant has slots of its own.
    const other = apiClient(pair.urls[1], await seedApiKeyFor(pair.service.sql, "idle"));
    const elsewhere = await other.post("/chat/completions", { model: "parley-sim-1", messages: [{ role: "user", content: "hi" }] });
    expect(elsewhere.status).toBe(200);

    // A cancelled reply gives its slot back at once: the next turn is taken on the other instance.
    const cancelled = await two.post(`/conversations/${conversations[0]}/messages/${first.body.reply.id}/cancel`);
    expect(cancelled.body.status).toBe("cancelled");
    const third = await one.post(`/conversations/${conversations[2]}/messages`, { content: "third", wait: false });
    expect(third.status).toBe(202);

    // So does a finished one: a client taking turns one after another is never refused.
    const quick = await seedApiKeyFor(pair.service.sql, "sequential");
    const sequential = apiClient(pair.urls[1], quick);
    const chat = (await sequential.post("/conversations", {})).body.id;
    for (let i = 0; i < 3; i++) {
      const turn = await sequential.post(`/conversations/${chat}/messages`, { content: `turn ${i}` });
      expect(turn.status).toBe(201);
      expect(turn.body.reply.status).toBe("completed");
      expect((await sequential.post("/chat/completions", { model: "parley-sim-1", messages: [{ role: "user", content: "hi" }] })).status).toBe(200);
    }

    for (const [conversation, reply] of [
      [conversations[1], second.body.reply.id],
      [conversations[2], third.body.reply.id],
    ]) {
      expect((await one.post(`/conversations/${conversation}/messages/${reply}/cancel`)).status).toBe(200);
    }
  });
});

describe("input limits", () => {
  let service: TestService;
  let api: ReturnType<typeof apiClient>;
  let conversationId: string;
  beforeAll(async () => {
    service = await startTestService({
      MAX_BODY_BYTES: 4096,
      MAX_CONTENT_CHARS: 50,
      MAX_MESSAGES_PER_REQUEST: 3,
      MAX_METADATA_ENTRIES: 2,
      MAX_METADATA_KEY_CHARS: 8,
      MAX_METADATA_VALUE_CHARS: 10,
      MAX_PAGE_LIMIT: 5,
    });
    api = apiClient(`${service.url}/v1`);
    conversationId = (await api.post("/conversations", { title: "limits", metadata: { a: "1" } })).body.id;
  });
  afterAll(() => service?.stop());

  it("answers 413 naming MAX_BODY_BYTES for a larger body, with or without a Content-Length", async () => {
    const before = await storedFor(service, "test");
    const big = JSON.stringify({ content: "x".repeat(5000) });
    const sized = await authedFetch(`${service.url}/v1/conversations/${conversationId}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: big,
    });
    expect(sized.status).toBe(413);
    expect(await sized.json()).toEqual({
      error: { message: expect.stringContaining("MAX_BODY_BYTES"), type: "invalid_request_error", param: null, code: "request_too_large" },
    });

    const chunked = await authedFetch(`${service.url}/v1/conversations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 10; i++) controller.enqueue(new TextEncoder().encode(i === 0 ? `{"title":"${"y".repeat(600)}` : "y".repeat(600)));
          controller.enqueue(new TextEncoder().encode('"}'));
          controller.close();
        },
      }),
      duplex: "half",
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect(((await chunked.json()) as { error: { code: string } }).error.code).toBe("request_too_large");
    expect(await storedFor(service, "test")).toEqual(before);
  });

  const cases: [string, string, string, unknown, string, string][] = [
    ["content longer than MAX_CONTENT_CHARS", "POST", "/messages", { content: "x".repeat(51) }, "content", "content_too_long"],
    ["a system prompt longer than MAX_CONTENT_CHARS", "PATCH", "", { system: "s".repeat(51) }, "system", "content_too_long"],
    ["more metadata entries than MAX_METADATA_ENTRIES", "PATCH", "", { metadata: { a: "1", b: "2", c: "3" } }, "metadata", "too_many_metadata_entries"],
    ["a metadata key longer than MAX_METADATA_KEY_CHARS", "PATCH", "", { metadata: { abcdefghi: "1" } }, "metadata", "metadata_key_too_long"],
    ["a metadata value longer than MAX_METADATA_VALUE_CHARS", "POST", "/messages", { content: "hi", reply: false, metadata: { k: "v".repeat(11) } }, "metadata.k", "metadata_value_too_long"],
    ["more messages than MAX_MESSAGES_PER_REQUEST", "POST", "/chat/completions", { model: "parley-sim-1", messages: Array.from({ length: 4 }, () => ({ role: "user", content: "hi" })) }, "messages", "too_many_messages"],
    ["an imported message longer than MAX_CONTENT_CHARS", "POST", "/chat/completions", { model: "parley-sim-1", messages: [{ role: "user", content: "x".repeat(51) }] }, "messages.0.content", "content_too_long"],
    ["content parts longer in total", "POST", "/chat/completions", { model: "parley-sim-1", messages: [{ role: "user", content: [{ type: "text", text: "x".repeat(30) }, { type: "text", text: "y".repeat(30) }] }] }, "messages.0.content", "content_too_long"],
  ];
  it.each(cases)("answers 400 for %s, naming the field and the limit, and stores nothing", async (_, method, path, body, param, code) => {
    const before = await storedFor(service, "test");
    const res = await api.request(method, `/conversations/${conversationId}${path}`, body);
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { message: expect.stringMatching(/MAX_[A-Z_]+/), type: "invalid_request_error", param, code } });
    expect(await storedFor(service, "test")).toEqual(before);
  });

  it("applies the same limits when a conversation is created with imported messages", async () => {
    const before = await storedFor(service, "test");
    const tooMany = await api.post("/conversations", { messages: Array.from({ length: 4 }, (_, i) => ({ role: i % 2 ? "assistant" : "user", content: "hi" })) });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error).toMatchObject({ param: "messages", code: "too_many_messages" });
    const tooLong = await api.post("/conversations", { messages: [{ role: "user", content: "hello" }, { role: "assistant", content: "z".repeat(51) }] });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error).toMatchObject({ param: "messages.1.content", code: "content_too_long" });
    const atTheLimit = await api.post("/conversations", { system: "s".repeat(50), metadata: { abcdefgh: "v".repeat(10), b: "" } });
    expect(atTheLimit.status).toBe(201);
    expect((await storedFor(service, "test")).length).toBe(before.length + 1);
  });

  it("answers 400 for a page limit outside 1..MAX_PAGE_LIMIT and serves one inside it", async () => {
    for (const path of ["/conversations", `/conversations/${conversationId}/messages`]) {
      for (const limit of ["6", "0", "-1", "1.5", "abc", "99999999999999999999"]) {
        const res = await api.get(`${path}?limit=${limit}`);
        expect(res.status, `${path}?limit=${limit}`).toBe(400);
        expect(res.body.error).toMatchObject({ type: "invalid_request_error", param: "limit" });
      }
      expect((await api.get<any>(`${path}?limit=6`)).body.error.message).toContain("MAX_PAGE_LIMIT");
      expect((await api.get(`${path}?limit=5`)).status).toBe(200);
    }
  });
});
