import { describe, expect, it } from "vitest";
import { postForEvents } from "../support/http.ts";
import { useTestService } from "../support/service.ts";

const ctx = useTestService();

/**
 * A new conversation's slow reply (two seconds of tokens), and the reply as GET shows it once it is in flight with
 * some content (or as last seen, after ~2 s).
 */
async function slowReplyInFlight(): Promise<{ conversationId: string; replyUrl: string; seen: any }> {
  const conv = (await ctx.api.post("/conversations", {})).body;
  const started = await ctx.api.post(`/conversations/${conv.id}/messages`, {
    content: "slowly",
    wait: false,
    params: { simulate: { tokens_per_second: 20, reply_tokens: 40 } },
  });
  const replyUrl = `/conversations/${conv.id}/messages/${started.body.reply.id}`;
  let seen: any;
  for (let i = 0; i < 100; i++) {
    seen = (await ctx.api.get(replyUrl)).body;
    if (seen.status === "in_progress" && seen.content.length > 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return { conversationId: conv.id, replyUrl, seen };
}

describe("turns served by the built-in simulator", () => {
  it("answers the same prompt with the same text, and honours max_tokens", async () => {
    const a = (await ctx.api.post("/conversations", { system: "S" })).body;
    const b = (await ctx.api.post("/conversations", { system: "S" })).body;
    const ra = await ctx.api.post(`/conversations/${a.id}/messages`, { content: "same question" });
    const rb = await ctx.api.post(`/conversations/${b.id}/messages`, { content: "same question" });
    expect(ra.body.reply.content).toBe(rb.body.reply.content);
    expect(ra.body.reply.content.length).toBeGreaterThan(0);

    const c = (await ctx.api.post("/conversations", { params: { max_tokens: 3 } })).body;
    const rc = await ctx.api.post(`/conversations/${c.id}/messages`, { content: "long answer please", params: { simulate: { reply_tokens: 50 } } });
    expect(rc.body.reply.finish_reason).toBe("length");
    expect(rc.body.reply.usage.completion_tokens).toBe(3);
  });

  it("fails mid-stream on demand, keeping the partial content", async () => {
    const conv = (await ctx.api.post("/conversations", {})).body;
    const res = await postForEvents(`${ctx.service.url}/v1/conversations/${conv.id}/messages`, {
      content: "fail after two",
      stream: true,
      params: { simulate: { fail_after_tokens: 2, reply_tokens: 10 } },
    });
    const deltas = res.events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content);
    expect(deltas).toHaveLength(2);
    const failed = JSON.parse(res.events.find((e) => e.event === "message.failed")!.data);
    expect(failed).toMatchObject({ status: "failed", content: deltas.join("") });
    expect(failed.error.code).toBe("simulated_failure");
    const stored = await ctx.api.get(`/conversations/${conv.id}/messages/${failed.id}`);
    expect(stored.body).toMatchObject({ status: "failed", content: deltas.join("") });
  });

  it("shows a reply's content so far while it is in flight", async () => {
    const { conversationId, seen } = await slowReplyInFlight();
    expect(seen.status).toBe("in_progress");
    expect(seen.content.length).toBeGreaterThan(0);
    const final = await ctx.api.post(`/conversations/${conversationId}/messages`, { content: "next" }); // busy until done
    expect(final.status).toBe(409);
  });
});

describe("a reply's time to first token (ttft_ms)", () => {
  const messagesOf = (convId: string) => `${ctx.service.url}/v1/conversations/${convId}/messages`;
  const dataOf = (events: { event: string | undefined; data: string }[], name: string) => JSON.parse(events.find((e) => e.event === name)!.data);

  it("is the time from the reply's creation to its first token, and null on the user's message", async () => {
    const conv = (await ctx.api.post("/conversations", {})).body;
    const started = Date.now();
    const res = await postForEvents(messagesOf(conv.id), { content: "take your time", stream: true, params: { simulate: { ttft_ms: 300, reply_tokens: 5 } } });
    const elapsed = Date.now() - started;
    const [user, queued] = res.events.filter((e) => e.event === "message.created").map((e) => JSON.parse(e.data));
    expect(user).toMatchObject({ role: "user", ttft_ms: null });
    expect(queued).toMatchObject({ status: "queued", ttft_ms: null });
    const completed = dataOf(res.events, "message.completed");
    expect(completed.status).toBe("completed");
    expect(completed.ttft_ms).toBeGreaterThanOrEqual(300);
    expect(completed.ttft_ms).toBeLessThan(elapsed);
    // Stored with the end: the message as read later says the same.
    expect((await ctx.api.get(`/conversations/${conv.id}/messages/${completed.id}`)).body.ttft_ms).toBe(completed.ttft_ms);
    expect((await ctx.api.get(`/conversations/${conv.id}/messages/${user.id}`)).body.ttft_ms).toBeNull();
  });

  it("is shown once the first token has come, and kept when the reply is cancelled", async () => {
    const { replyUrl, seen } = await slowReplyInFlight();
    expect(seen).toMatchObject({ status: "in_progress", ttft_ms: expect.any(Number) });
    const cancelled = await ctx.api.post(`${replyUrl}/cancel`);
    expect(cancelled.body.status).toBe("cancelled");
    expect(cancelled.body.content.length).toBeGreaterThan(0);
    // One source, the first delta's event: the reply in flight and the cancelled one agree.
    expect(cancelled.body.ttft_ms).toBe(seen.ttft_ms);
    expect((await ctx.api.get(replyUrl)).body.ttft_ms).toBe(seen.ttft_ms);
  });

  it("is null on a reply that failed before any token, and kept on one that failed after some", async () => {
    const conv = (await ctx.api.post("/conversations", {})).body;
    const before = await postForEvents(messagesOf(conv.id), { content: "fail at once", stream: true, params: { simulate: { fail_after_tokens: 0 } } });
    expect(dataOf(before.events, "message.failed")).toMatchObject({ status: "failed", content: "", ttft_ms: null });

    const after = await postForEvents(messagesOf(conv.id), { content: "fail after two", stream: true, params: { simulate: { fail_after_tokens: 2, reply_tokens: 10 } } });
    const failed = dataOf(after.events, "message.failed");
    expect(failed.content.length).toBeGreaterThan(0);
    expect(failed.ttft_ms).toEqual(expect.any(Number));
    expect((await ctx.api.get(`/conversations/${conv.id}/messages/${failed.id}`)).body.ttft_ms).toBe(failed.ttft_ms);
  });
});
