import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, postForEvents, readEvents } from "../support/http.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { startTestService, type TestService } from "../support/service.ts";

let upstream: FakeUpstream;
let service: TestService;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  service = await startTestService({ UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }] });
  api = apiClient(`${service.url}/v1`);
});
afterAll(async () => {
  await service?.stop();
  await upstream?.close();
});
beforeEach(() => upstream.reset());

const keyed = (key: string) => ({ "idempotency-key": key });
const count = async (table: "conversations" | "messages", where: string) => {
  const [row] = await service.sql.unsafe(`select count(*)::int as n from ${table} where ${where}`);
  return row?.n as number;
};

describe("Idempotency-Key", () => {
  it("replays the first answer to a repeated create, and stores one conversation", async () => {
    const body = { model: "fake-model", title: "idem-create" };
    const first = await api.post("/conversations", body, keyed("create-1"));
    const again = await api.post("/conversations", { title: "idem-create", model: "fake-model" }, keyed("create-1"));
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.body).toEqual(first.body);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await count("conversations", "title = 'idem-create'")).toBe(1);
  });

  it("answers 409 when the key comes back with another request", async () => {
    await api.post("/conversations", { title: "idem-a" }, keyed("create-2"));
    const other = await api.post("/conversations", { title: "idem-b" }, keyed("create-2"));
    expect(other.status).toBe(409);
    expect(other.body.error).toMatchObject({ code: "idempotency_key_reused", param: "Idempotency-Key" });
    expect(await count("conversations", "title = 'idem-b'")).toBe(0);
  });

  it("makes one turn of ten concurrent appends with one key, and all get its answer", async () => {
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const results = await Promise.all(
      Array.from({ length: 10 }, () => api.post(`/conversations/${conv.id}/messages`, { content: "only once" }, keyed("append-1"))),
    );
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(201));
    const ids = new Set(results.map((r) => `${r.body.message.id}/${r.body.reply.id}`));
    expect(ids.size).toBe(1);
    expect(results.every((r) => r.body.reply.status === "completed")).toBe(true);
    expect(await count("messages", `conversation_id = '${conv.id}'`)).toBe(2);
    expect(upstream.requests).toHaveLength(1);
  });

  it("replays a streamed append as the same reply's events", async () => {
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const url = `${service.url}/v1/conversations/${conv.id}/messages`;
    const stream = (key: string) =>
      authedFetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...keyed(key) },
        body: JSON.stringify({ content: "stream once", stream: true }),
      }).then(readEvents);
    const first = await stream("append-stream");
    const again = await stream("append-stream");
    expect(again.events).toEqual(first.events);
    expect(first.events.at(-1)?.event).toBe("done");
    expect(await count("messages", `conversation_id = '${conv.id}'`)).toBe(2);
    expect(upstream.requests).toHaveLength(1);
  });

  it("works for both chat-completions endpoints, the key sent as a header through the SDK", async () => {
    const openai = new OpenAI({ baseURL: `${service.url}/v1`, apiKey: TEST_API_KEY, maxRetries: 0 });
    const ask = () =>
      openai.chat.completions.create(
        { model: "fake-model", messages: [{ role: "user", content: "stateless once" }] },
        { headers: { "Idempotency-Key": "chat-1" } },
      );
    const [a, b] = [await ask(), await ask()];
    expect(b.id).toBe(a.id);
    expect(b.choices[0]?.message.content).toBe(a.choices[0]?.message.content);

    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const bound = new OpenAI({ baseURL: `${service.url}/v1/conversations/${conv.id}`, apiKey: TEST_API_KEY, maxRetries: 0 });
    const askBound = async () => {
      const s = await bound.chat.completions.create(
        { model: "fake-model", messages: [{ role: "user", content: "bound once" }], stream: true },
        { headers: { "Idempotency-Key": "chat-2" } },
      );
      let text = "";
      for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? "";
      return text;
    };
    expect(await askBound()).toBe(await askBound());
    expect(await count("messages", `conversation_id = '${conv.id}'`)).toBe(2);
    expect(upstream.requests).toHaveLength(2);
  });

  it("gives the key back when the request fails, and refuses malformed keys", async () => {
    const missing = await api.post("/conversations/conv_01jf3t8vvaf8s9k0d7k6x1s2y3/messages", { content: "x" }, keyed("retry-me"));
    expect(missing.status).toBe(404);
    const reused = await api.post("/conversations", { title: "after-failure" }, keyed("retry-me"));
    expect(reused.status).toBe(201);

    const tooLong = await api.post("/conversations", {}, keyed("k".repeat(256)));
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error.param).toBe("Idempotency-Key");
    const res = await postForEvents(`${service.url}/v1/conversations`, {});
    expect(res.status).toBe(201); // no key: no idempotency
  });
});
