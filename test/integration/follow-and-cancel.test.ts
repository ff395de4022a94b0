import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/logger.ts";
import { startService, type RunningService } from "../../src/service.ts";
import { startFakeUpstream, type FakeUpstream } from "../support/fake-upstream.ts";
import { apiClient, authedFetch, readEvents, type SseEvent } from "../support/http.ts";
import { startTestService, type TestService } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

let upstream: FakeUpstream;
let service: TestService;
let secondApi: RunningService;
let api: ReturnType<typeof apiClient>;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  service = await startTestService({
    UPSTREAMS: [{ name: "fake", base_url: upstream.baseURL, models: ["fake-model"] }],
  });
  // A second API instance on the same Postgres and Redis, with no worker of its own.
  secondApi = await startService({ ...service.config, ROLE: "api", PORT: 0 }, createLogger("silent"));
  api = apiClient(`${service.url}/v1`);
});
afterAll(async () => {
  await secondApi?.stop();
  await service?.stop();
  await upstream?.close();
});
beforeEach(() => upstream.reset());

const slowly = (tokenDelayMs = 60) => upstream.setBehaviour({ kind: "ok", tokenDelayMs });
const QUESTION = "tell me something long enough to stream for a while please";
const expectedText = () => upstream.replyTextFor(QUESTION);

async function startReply() {
  const { body: conv } = await api.post("/conversations", { model: "fake-model" });
  const { body } = await api.post(`/conversations/${conv.id}/messages`, { content: QUESTION, wait: false });
  return { conversationId: conv.id as string, replyId: body.reply.id as string };
}

async function follow(base: string, conversationId: string, replyId: string, opts: { lastEventId?: string; query?: string } = {}) {
  const res = await authedFetch(`${base}/v1/conversations/${conversationId}/messages/${replyId}/events${opts.query ?? ""}`, {
    headers: opts.lastEventId ? { "last-event-id": opts.lastEventId } : {},
  });
  return { status: res.status, ...(await readEvents(res)) };
}

async function waitForStatus(conversationId: string, replyId: string, status: string) {
  for (let i = 0; i < 200; i++) {
    const { body } = await api.get(`/conversations/${conversationId}/messages/${replyId}`);
    if (body.status === status) return body;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`reply never became ${status}`);
}

const deltaText = (events: SseEvent[]) =>
  events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content).join("");

describe("a client that drops a streaming request", () => {
  it("does not stop the reply: it completes and is stored", async () => {
    slowly();
    const { body: conv } = await api.post("/conversations", { model: "fake-model" });
    const controller = new AbortController();
    const res = await authedFetch(`${service.url}/v1/conversations/${conv.id}/messages`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ content: QUESTION, stream: true }),
      signal: controller.signal,
    });
    const reader = res.body!.getReader();
    let seen = "";
    while (!seen.includes("message.delta")) seen += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    // The second event is the queued reply.
    const replyId = JSON.parse(seen.split("\n").filter((l) => l.startsWith("data: "))[1]!.slice("data: ".length)).id as string;
    const reply = await waitForStatus(conv.id, replyId, "completed");
    expect(reply.content).toBe(expectedText());
  });
});

describe("following a reply", () => {
  it("gives several followers, on either API instance, the same events; a resume gets exactly the rest", async () => {
    slowly();
    const { conversationId, replyId } = await startReply();
    const [a, b] = await Promise.all([
      follow(service.url, conversationId, replyId),
      follow(secondApi.url!, conversationId, replyId),
    ]);
    expect(a.status).toBe(200);
    expect(a.events.at(-2)?.event).toBe("message.completed");
    expect(a.events.at(-1)).toMatchObject({ event: "done", data: "[DONE]" });
    expect(b.events).toEqual(a.events);
    expect(deltaText(a.events)).toBe(expectedText());

    const cut = a.events[4]!.id!;
    const resumed = await follow(secondApi.url!, conversationId, replyId, { lastEventId: cut });
    expect(resumed.events).toEqual(a.events.slice(5));
    const byQuery = await follow(service.url, conversationId, replyId, { query: `?last_event_id=${cut}` });
    expect(byQuery.events).toEqual(a.events.slice(5));
  });

  it("resumes mid-reply without losing or repeating an event", async () => {
    slowly(40);
    const { conversationId, replyId } = await startReply();
    const full = follow(service.url, conversationId, replyId);
    // Read the first few events, then reconnect from the last one seen.
    const res = await authedFetch(`${service.url}/v1/conversations/${conversationId}/messages/${replyId}/events`);
    const reader = res.body!.getReader();
    let text = "";
    while ((text.match(/event: message.delta/g) ?? []).length < 2) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
    const ids = [...text.matchAll(/^id: (\S+)$/gm)].map((m) => m[1]!);
    const rest = await follow(service.url, conversationId, replyId, { lastEventId: ids.at(-1)! });
    const all = (await full).events;
    const index = all.findIndex((e) => e.id === ids.at(-1));
    expect(index).toBeGreaterThan(0);
    expect(rest.events).toEqual(all.slice(index + 1));
  });

  it("replays a finished reply from Postgres once its events have expired", async () => {
    const { conversationId, replyId } = await startReply();
    const done = await waitForStatus(conversationId, replyId, "completed");
    // The events stay in Redis for REPLY_EVENTS_TTL_SECONDS; drop them as expiry would.
    const { Redis } = await import("ioredis");
    const redis = new Redis(service.config.REDIS_URL);
    const key = `${service.config.REDIS_PREFIX}:reply-events:{${replyId}}`;
    // The row is stored before the end events are written: wait for `done`, or the worker would write the
    // end into a stream deleted under it, and the follower would read that instead of the stored reply.
    await eventually(async () => {
      const [last] = (await redis.xrevrange(key, "+", "-", "COUNT", 1)) as [string, string[]][];
      return last?.[1].includes("done") ? true : null;
    }, { what: "the reply's done event", timeoutMs: 20_000 });
    await redis.del(key);
    redis.disconnect();

    const replay = await follow(service.url, conversationId, replyId);
    expect(replay.events.map((e) => e.event)).toEqual(["message.delta", "message.completed", "done"]);
    expect(deltaText(replay.events)).toBe(done.content);
    expect(JSON.parse(replay.events[1]!.data)).toMatchObject({ id: replyId, status: "completed", content: done.content });
    const resumed = await follow(service.url, conversationId, replyId, { lastEventId: "1-0" });
    expect(resumed.events.map((e) => e.event)).toEqual(["message.completed", "done"]);
  });

  it("answers 400 for a message that is not a reply or a malformed Last-Event-ID, 404 for unknown ids", async () => {
    const { conversationId, replyId } = await startReply();
    const { body: history } = await api.get(`/conversations/${conversationId}/messages`);
    const userMessage = history.data[0].id;
    const notReply = await authedFetch(`${service.url}/v1/conversations/${conversationId}/messages/${userMessage}/events`);
    expect(notReply.status).toBe(400);
    expect(((await notReply.json()) as any).error.param).toBe("message_id");
    const badId = await follow(service.url, conversationId, replyId, { lastEventId: "yesterday" });
    expect(badId.status).toBe(400);
    const unknown = await authedFetch(`${service.url}/v1/conversations/${conversationId}/messages/msg_01jf3t8vvaf8s9k0d7k6x1s2y3/events`);
    expect(unknown.status).toBe(404);
    await waitForStatus(conversationId, replyId, "completed");
  });
});

describe("cancelling a reply", () => {
  it("stops the generation, aborts the upstream call, keeps the partial content and tells followers", async () => {
    slowly(80);
    const { conversationId, replyId } = await startReply();
    const following = follow(secondApi.url!, conversationId, replyId);
    let partial: any;
    for (let i = 0; i < 200; i++) {
      partial = (await api.get(`/conversations/${conversationId}/messages/${replyId}`)).body;
      if (partial.content.split(" ").length >= 3) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const cancelled = await api.post(`/conversations/${conversationId}/messages/${replyId}/cancel`);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body.status).toBe("cancelled");
    expect(cancelled.body.content.length).toBeGreaterThan(0);
    expect(expectedText().startsWith(cancelled.body.content)).toBe(true);
    expect(cancelled.body.content.length).toBeLessThan(expectedText().length);

    const seen = await following;
    expect(seen.events.at(-2)?.event).toBe("message.cancelled");
    expect(JSON.parse(seen.events.at(-2)!.data)).toMatchObject({ status: "cancelled", content: cancelled.body.content });

    for (let i = 0; i < 100 && !upstream.requests[0]?.closedEarly; i++) await new Promise((r) => setTimeout(r, 20));
    expect(upstream.requests[0]?.closedEarly).toBe(true);

    const [stored] = await service.sql`select status, content from messages where id = ${replyId}`;
    expect(stored).toMatchObject({ status: "cancelled", content: cancelled.body.content });
    const again = await api.post(`/conversations/${conversationId}/messages/${replyId}/cancel`);
    expect(again.body).toEqual(cancelled.body);

    // The conversation goes on, and the model sees what the cancelled reply had said.
    upstream.setBehaviour({ kind: "ok" });
    const next = await api.post(`/conversations/${conversationId}/messages`, { content: "go on" });
    expect(next.body.reply.status).toBe("completed");
    expect(upstream.requests.at(-1)?.body.messages).toEqual([
      { role: "user", content: QUESTION },
      { role: "assistant", content: cancelled.body.content },
      { role: "user", content: "go on" },
    ]);
  });

  it("returns a finished reply unchanged, and refuses messages that are not replies", async () => {
    const { conversationId, replyId } = await startReply();
    const done = await waitForStatus(conversationId, replyId, "completed");
    const res = await api.post(`/conversations/${conversationId}/messages/${replyId}/cancel`);
    expect(res.status).toBe(200);
    expect(res.body).toEqual(done);
    const { body: history } = await api.get(`/conversations/${conversationId}/messages`);
    expect((await api.post(`/conversations/${conversationId}/messages/${history.data[0].id}/cancel`)).status).toBe(400);
    expect((await api.post(`/conversations/${conversationId}/messages/msg_01jf3t8vvaf8s9k0d7k6x1s2y3/cancel`)).status).toBe(404);
  });
});
