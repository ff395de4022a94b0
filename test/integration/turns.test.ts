import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, postForEvents } from "../support/http.ts";
import { startTestService, type TestService } from "../support/service.ts";

let upstream: FakeUpstream;
let service: TestService;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  service = await startTestService({
    UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, api_key: "sk-secret-upstream-key", models: ["fake-model"] }],
  });
  api = apiClient(`${service.url}/v1`);
});
afterAll(async () => {
  await service?.stop();
  await upstream?.close();
});
beforeEach(() => upstream.reset());

async function newConversation(body: Record<string, unknown> = {}) {
  const res = await api.post("/conversations", { model: "fake-model", ...body });
  expect(res.status).toBe(201);
  return res.body as { id: string };
}

async function storedMessages(conversationId: string) {
  return service.sql<{ seq: number; role: string; status: string; content: string; error: any; finish_reason: string | null }[]>`
    select seq, role, status, content, error, finish_reason from messages
    where conversation_id = ${conversationId} order by seq`;
}

describe("a turn, waiting for the reply as JSON", () => {
  it("stores the user message and the completed reply with usage", async () => {
    const conv = await newConversation({ system: "You are terse." });
    const res = await api.post(`/conversations/${conv.id}/messages`, { content: "Hello there" });
    expect(res.status).toBe(201);
    expect(res.body.message).toMatchObject({ role: "user", content: "Hello there", seq: 1, status: "completed" });
    expect(res.body.reply).toMatchObject({
      role: "assistant",
      seq: 2,
      status: "completed",
      model: "fake-model",
      finish_reason: "stop",
      content: upstream.replyTextFor("Hello there"),
    });
    expect(res.body.reply.usage.total_tokens).toBeGreaterThan(0);
    expect(res.body.reply.completed_at).toBeGreaterThan(0);

    const stored = await storedMessages(conv.id);
    expect(stored.map((m) => [m.seq, m.role, m.status])).toEqual([
      [1, "user", "completed"],
      [2, "assistant", "completed"],
    ]);
    expect(stored[1]?.content).toBe(res.body.reply.content);
    expect((await api.get(`/conversations/${conv.id}`)).body.message_count).toBe(2);
  });

  it("answers 202 with the reply queued when wait is false, and the reply completes", async () => {
    const conv = await newConversation();
    const res = await api.post(`/conversations/${conv.id}/messages`, { content: "later", wait: false });
    expect(res.status).toBe(202);
    expect(res.body.reply.status).toBe("queued");
    let reply: any;
    for (let i = 0; i < 100; i++) {
      reply = (await api.get(`/conversations/${conv.id}/messages/${res.body.reply.id}`)).body;
      if (reply.status === "completed") break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(reply.status).toBe("completed");
    expect(reply.content).toBe(upstream.replyTextFor("later"));
  });

  it("passes the conversation's params and the turn's params to the upstream", async () => {
    const conv = await newConversation({ params: { temperature: 0.2, top_k: 40, max_tokens: 64 } });
    await api.post(`/conversations/${conv.id}/messages`, { content: "p", params: { temperature: 0.9, repetition_penalty: 1.1 } });
    const body = upstream.requests.at(-1)?.body;
    expect(body).toMatchObject({ model: "fake-model", temperature: 0.9, top_k: 40, max_tokens: 64, repetition_penalty: 1.1, stream: true });
  });

  it("appends without a reply when reply is false, and stores assistant and system messages as given", async () => {
    const conv = await newConversation();
    const user = await api.post(`/conversations/${conv.id}/messages`, { content: "note", reply: false });
    expect(user.status).toBe(201);
    expect(user.body.reply).toBeNull();
    const assistant = await api.post(`/conversations/${conv.id}/messages`, { role: "assistant", content: "noted" });
    expect(assistant.body.message).toMatchObject({ role: "assistant", seq: 2, status: "completed" });
    expect(upstream.requests).toHaveLength(0);
  });
});

describe("many turns", () => {
  it("sends the system prompt and every earlier message, in order, on the 5th turn", async () => {
    const conv = await newConversation({ system: "You are a helpful travel guide." });
    const replies: string[] = [];
    for (let turn = 1; turn <= 5; turn++) {
      const res = await api.post(`/conversations/${conv.id}/messages`, { content: `question ${turn}` });
      expect(res.status).toBe(201);
      replies.push(res.body.reply.content);
    }
    expect(upstream.requests).toHaveLength(5);
    const expected = [{ role: "system", content: "You are a helpful travel guide." }];
    for (let turn = 1; turn <= 4; turn++) {
      expected.push({ role: "user", content: `question ${turn}` }, { role: "assistant", content: replies[turn - 1]! });
    }
    expected.push({ role: "user", content: "question 5" });
    expect(upstream.requests[4]?.body.messages).toEqual(expected);

    const history = await api.get(`/conversations/${conv.id}/messages?limit=100`);
    expect(history.body.data.map((m: any) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  });
});

describe("a turn streamed as SSE", () => {
  it("sends created, deltas, completed and done, each with an increasing id", async () => {
    const conv = await newConversation();
    const res = await postForEvents(`${service.url}/v1/conversations/${conv.id}/messages`, { content: "stream me", stream: true });
    expect(res.status).toBe(200);
    expect(res.contentType).toContain("text/event-stream");
    const names = res.events.map((e) => e.event);
    expect(names.slice(0, 2)).toEqual(["message.created", "message.created"]);
    expect(names.at(-2)).toBe("message.completed");
    expect(names.at(-1)).toBe("done");
    expect(res.events.at(-1)?.data).toBe("[DONE]");
    const deltas = res.events.filter((e) => e.event === "message.delta");
    expect(deltas.length).toBeGreaterThan(1);
    expect(names.slice(2, -2).every((n) => n === "message.delta")).toBe(true);

    const created = res.events.slice(0, 2).map((e) => JSON.parse(e.data));
    expect(created[0]).toMatchObject({ role: "user", content: "stream me", status: "completed" });
    expect(created[1]).toMatchObject({ role: "assistant", status: "queued", content: "" });
    const text = deltas.map((e) => JSON.parse(e.data).delta.content).join("");
    expect(deltas.every((e) => JSON.parse(e.data).id === created[1].id)).toBe(true);
    const completed = JSON.parse(res.events.at(-2)!.data);
    expect(completed).toMatchObject({ id: created[1].id, status: "completed", content: text });
    expect(text).toBe(upstream.replyTextFor("stream me"));

    const ids = res.events.map((e) => e.id ?? "");
    expect(ids.every((id) => /^\d+-\d+$/.test(id))).toBe(true);
    const ordered = [...ids].sort((a, b) => {
      const [am, as] = a.split("-").map(Number);
      const [bm, bs] = b.split("-").map(Number);
      return am! - bm! || as! - bs!;
    });
    expect(ids).toEqual(ordered);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("keeps an idle stream alive with comment lines", async () => {
    upstream.setBehaviour({ kind: "ok", ttftMs: 2500 });
    const conv = await newConversation();
    const res = await postForEvents(`${service.url}/v1/conversations/${conv.id}/messages`, { content: "slow", stream: true });
    expect(res.comments.length).toBeGreaterThan(0);
    expect(res.events.at(-1)?.event).toBe("done");
  });

  it("rejects stream: true for a message that asks for no reply", async () => {
    const conv = await newConversation();
    const res = await api.post(`/conversations/${conv.id}/messages`, { content: "x", reply: false, stream: true });
    expect(res.status).toBe(400);
    expect(res.body.error.param).toBe("stream");
    expect(await storedMessages(conv.id)).toHaveLength(0);
  });
});

describe("concurrency", () => {
  it("gives 50 concurrent appends the seqs 1..50 with no gaps or duplicates", async () => {
    const conv = await newConversation();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => api.post(`/conversations/${conv.id}/messages`, { content: `m${i}`, reply: false })),
    );
    expect(results.every((r) => r.status === 201)).toBe(true);
    const seqs = results.map((r) => r.body.message.seq).sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    const stored = await storedMessages(conv.id);
    expect(stored.map((m) => m.seq)).toEqual(seqs);
    expect(new Set(stored.map((m) => m.content)).size).toBe(50);
    expect((await api.get(`/conversations/${conv.id}`)).body.message_count).toBe(50);
  });

  it("lets exactly one of 10 racing turns start a reply; the others get 409 and store nothing", async () => {
    // Long enough that the reply is still in flight when the last racer is served on a loaded machine
    // (at 300 ms, under a load of 9, a reply once ended before a racer arrived, which then rightly got 202).
    upstream.setBehaviour({ kind: "ok", ttftMs: 3000 });
    const conv = await newConversation();
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) => api.post(`/conversations/${conv.id}/messages`, { content: `race ${i}`, wait: false })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([202, ...Array(9).fill(409)]);
    expect(results.filter((r) => r.status === 409).every((r) => r.body.error.code === "conversation_busy")).toBe(true);
    const stored = await storedMessages(conv.id);
    expect(stored.map((m) => m.seq)).toEqual([1, 2]);
    expect((await api.get(`/conversations/${conv.id}`)).body.message_count).toBe(2);
  });

  it("answers 409 conversation_busy while a reply is in flight, naming the reply", async () => {
    upstream.setBehaviour({ kind: "ok", ttftMs: 1500 });
    const conv = await newConversation();
    const first = await api.post(`/conversations/${conv.id}/messages`, { content: "one", wait: false });
    const second = await api.post(`/conversations/${conv.id}/messages`, { content: "two" });
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe("conversation_busy");
    expect(second.body.error.message).toContain(first.body.reply.id);
    expect(await storedMessages(conv.id)).toHaveLength(2);
  });
});

describe("upstream failures", () => {
  it("fails the reply with the upstream's error on a 500, and the conversation takes the next turn", async () => {
    const conv = await newConversation();
    upstream.setBehaviour({ kind: "status", status: 500, body: { error: { message: "boom", type: "server_error" } } });
    const res = await api.post(`/conversations/${conv.id}/messages`, { content: "fail please" });
    expect(res.status).toBe(201);
    expect(res.body.reply.status).toBe("failed");
    expect(res.body.reply.error.code).toBe("upstream_error");
    expect(res.body.reply.error.message).toContain("500");
    expect(JSON.stringify(res.body)).not.toContain("sk-secret-upstream-key");

    upstream.setBehaviour({ kind: "ok" });
    const next = await api.post(`/conversations/${conv.id}/messages`, { content: "again" });
    expect(next.body.reply.status).toBe("completed");
    // A reply that failed before saying anything takes its turn out of history: the user's message is marked, and
    // the model sees only the next turn (a retried request stacks no copies).
    expect(upstream.requests.at(-1)?.body.messages).toEqual([{ role: "user", content: "again" }]);
    const marked = await api.get(`/conversations/${conv.id}/messages/${res.body.message.id}`);
    expect(marked.body).toMatchObject({ status: "failed", error: { code: "reply_failed" } });
  });

  it("retries an upstream that is rate limited before answering, and the reply completes", async () => {
    const conv = await newConversation();
    upstream.queueBehaviour({ kind: "status", status: 429, headers: { "retry-after": "0" } });
    upstream.queueBehaviour({ kind: "status", status: 503 });
    const res = await api.post(`/conversations/${conv.id}/messages`, { content: "busy upstream" });
    expect(res.body.reply).toMatchObject({ status: "completed", content: upstream.replyTextFor("busy upstream") });
    expect(upstream.requests).toHaveLength(3);
  });

  it("keeps the partial content when the upstream drops the connection mid-stream", async () => {
    const conv = await newConversation();
    upstream.setBehaviour({ kind: "drop", afterTokens: 3 });
    const res = await postForEvents(`${service.url}/v1/conversations/${conv.id}/messages`, { content: "drop me please now", stream: true });
    const deltas = res.events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content);
    expect(deltas).toHaveLength(3);
    expect(res.events.at(-2)?.event).toBe("message.failed");
    const failed = JSON.parse(res.events.at(-2)!.data);
    expect(failed.status).toBe("failed");
    expect(failed.content).toBe(deltas.join(""));
    expect(failed.error.code).toBe("upstream_disconnected");

    const stored = await storedMessages(conv.id);
    expect(stored[1]).toMatchObject({ status: "failed", content: deltas.join("") });
    upstream.setBehaviour({ kind: "ok" });
    expect((await api.post(`/conversations/${conv.id}/messages`, { content: "next" })).body.reply.status).toBe("completed");
  });
});

describe("messages", () => {
  it("gets one message, pages the history, and 404s unknown ids", async () => {
    const conv = await newConversation();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await api.post(`/conversations/${conv.id}/messages`, { content: `n${i}`, reply: false })).body.message.id);

    const one = await api.get(`/conversations/${conv.id}/messages/${ids[2]}`);
    expect(one.body).toMatchObject({ id: ids[2], seq: 3, content: "n2" });

    const page = await api.get(`/conversations/${conv.id}/messages?limit=2&after=${ids[1]}`);
    expect(page.body.data.map((m: any) => m.id)).toEqual(ids.slice(2, 4));
    expect(page.body.has_more).toBe(true);
    const exact = await api.get(`/conversations/${conv.id}/messages?limit=5`);
    expect(exact.body.data).toHaveLength(5);
    expect(exact.body.has_more).toBe(false);
    const before = await api.get(`/conversations/${conv.id}/messages?limit=2&before=${ids[4]}`);
    expect(before.body.data.map((m: any) => m.id)).toEqual(ids.slice(2, 4));
    const desc = await api.get(`/conversations/${conv.id}/messages?order=desc&limit=2`);
    expect(desc.body.data.map((m: any) => m.id)).toEqual([ids[4], ids[3]]);

    const empty = await api.get(`/conversations/${(await newConversation()).id}/messages`);
    expect(empty.body).toEqual({ object: "list", data: [], first_id: null, last_id: null, has_more: false });

    expect((await api.get(`/conversations/${conv.id}/messages/msg_01jf3t8vvaf8s9k0d7k6x1s2y3`)).status).toBe(404);
    expect((await api.get(`/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3/messages`)).status).toBe(404);
    const badCursor = await api.get(`/conversations/${conv.id}/messages?after=msg_01jf3t8vvaf8s9k0d7k6x1s2y3`);
    expect(badCursor.status).toBe(400);
    expect(badCursor.body.error.param).toBe("after");
  });

  it("rejects bad message bodies with 400 naming the field and stores nothing", async () => {
    const conv = await newConversation();
    const cases: [unknown, string | null][] = [
      [{}, "content"],
      [{ content: 5 }, "content"],
      [{ content: "x", role: "robot" }, "role"],
      [{ content: "x", role: "tool" }, "tool_call_id"],
      [{ content: "x", role: "assistant", reply: true }, "reply"],
      [{ content: "x", stream: "yes" }, "stream"],
      [{ content: "x", extra: 1 }, null],
      [{ content: "nul \u0000 inside" }, "content"],
      [{ content: "x", params: { stop: "\u0000" } }, "params"],
    ];
    for (const [body, param] of cases) {
      const res = await api.post(`/conversations/${conv.id}/messages`, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      if (param) expect(res.body.error.param, JSON.stringify(body)).toBe(param);
    }
    expect(await storedMessages(conv.id)).toHaveLength(0);
    expect((await api.post(`/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3/messages`, { content: "x" })).status).toBe(404);
  });
});
