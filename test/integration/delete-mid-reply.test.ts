import { describe, expect, it } from "vitest";
import { authedFetch, postForEvents, readEvents, type SseEvent } from "../support/http.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/**
 * Deleting a conversation whose reply is in flight stops the reply as cancel
 * does: every follower ends (`message.cancelled`, then `done`), a waiting
 * append answers with the cancelled reply, the upstream call is aborted and
 * the reply's slot is given back.
 */

const ctx = useServiceWithFakeUpstream({
  // Followers must end from the delete's own events, not from the stall check's look at the (gone) row.
  overrides: { MAX_CONCURRENT_REPLIES: 2, REPLY_STALL_CHECK_MS: 600_000 },
});

const QUESTION = "a question whose answer takes far longer than this test may run";
const endOf = (events: SseEvent[]) => events.slice(-2).map((e) => e.event);
const deltaText = (events: SseEvent[]) =>
  events.filter((e) => e.event === "message.delta").map((e) => JSON.parse(e.data).delta.content as string).join("");

describe("deleting a conversation mid-reply", () => {
  it("ends the stream, the follower and the waiting append, aborts the upstream call and frees the slot", async () => {
    const { api, service, upstream } = ctx;
    // About 60 s of tokens: only the delete can end these replies within the test.
    upstream.setBehaviour({ kind: "ok", replyTokens: 3000, tokenDelayMs: 20 });
    const full = Array.from({ length: 3000 }, (_, i) => ` w${i}`).join("");

    const { body: waited } = await api.post("/conversations", { model: "fake-model" });
    const { body: streamed } = await api.post("/conversations", { model: "fake-model" });
    const waiting = api.post(`/conversations/${waited.id}/messages`, { content: QUESTION, wait: true });
    const streaming = postForEvents(`${service.url}/v1/conversations/${streamed.id}/messages`, { content: QUESTION, stream: true });

    const replyOf = (conversationId: string) =>
      eventually(async () => {
        const { body } = await api.get(`/conversations/${conversationId}/messages`);
        return body.data?.find((m: { role: string }) => m.role === "assistant")?.id as string | undefined;
      }, { what: "the reply was stored", timeoutMs: 20_000 });
    const waitedReply = await replyOf(waited.id);
    const streamedReply = await replyOf(streamed.id);
    const following = authedFetch(`${service.url}/v1/conversations/${waited.id}/messages/${waitedReply}/events`).then(readEvents);
    // Both replies are generating: some content has streamed.
    for (const [conversationId, replyId] of [[waited.id, waitedReply], [streamed.id, streamedReply]]) {
      await eventually(async () => {
        const { body } = await api.get(`/conversations/${conversationId}/messages/${replyId}`);
        return body.content ? true : null;
      }, { what: "the reply streamed", timeoutMs: 20_000 });
    }

    expect((await api.delete(`/conversations/${waited.id}`)).status).toBe(200);
    expect((await api.delete(`/conversations/${streamed.id}`)).status).toBe(200);

    const answered = await waiting;
    expect(answered.status).toBe(201);
    expect(answered.body.reply).toMatchObject({ id: waitedReply, status: "cancelled" });
    expect(full.startsWith(answered.body.reply.content)).toBe(true);

    const followed = await following;
    expect(endOf(followed.events)).toEqual(["message.cancelled", "done"]);
    expect(JSON.parse(followed.events.at(-2)!.data)).toMatchObject({ id: waitedReply, status: "cancelled" });
    // The cancelled reply holds exactly what its followers were sent.
    expect(deltaText(followed.events)).toBe(answered.body.reply.content);

    const stream = await streaming;
    expect(stream.status).toBe(200);
    expect(endOf(stream.events)).toEqual(["message.cancelled", "done"]);
    const cancelled = JSON.parse(stream.events.at(-2)!.data);
    expect(cancelled).toMatchObject({ id: streamedReply, status: "cancelled" });
    expect(full.startsWith(cancelled.content)).toBe(true);
    expect(deltaText(stream.events)).toBe(cancelled.content);

    // The upstream calls were aborted, not left to run to their end.
    await eventually(async () => (upstream.requests.length === 2 && upstream.requests.every((r) => r.closedEarly) ? true : null), { what: "the upstream calls were aborted", timeoutMs: 20_000 });

    // Both slots are free: the tenant starts MAX_CONCURRENT_REPLIES new turns at once.
    upstream.setBehaviour({ kind: "ok" });
    const fresh = await Promise.all([0, 1].map(async () => (await api.post("/conversations", { model: "fake-model" })).body.id as string));
    const turns = await Promise.all(fresh.map((id) => api.post(`/conversations/${id}/messages`, { content: "again" })));
    expect(turns.map((t) => [t.status, t.body.reply?.status])).toEqual([
      [201, "completed"],
      [201, "completed"],
    ]);
    expect((await api.get(`/conversations/${waited.id}`)).status).toBe(404);
    const rows = await service.sql`select count(*)::int as n from messages where conversation_id in (${waited.id}, ${streamed.id})`;
    expect(rows[0]?.n).toBe(0);
  }, 60_000);

  it("answers 404 for a conversation that is not there, and leaves other conversations' replies alone", async () => {
    const { api } = ctx;
    ctx.upstream.setBehaviour({ kind: "ok" });
    const { body: other } = await api.post("/conversations", { model: "fake-model" });
    const turn = await api.post(`/conversations/${other.id}/messages`, { content: "hello" });
    expect(turn.body.reply.status).toBe("completed");
    const { body: gone } = await api.post("/conversations", { model: "fake-model" });
    expect((await api.delete(`/conversations/${gone.id}`)).status).toBe(200);
    expect((await api.delete(`/conversations/${gone.id}`)).status).toBe(404);
    expect((await api.get(`/conversations/${other.id}/messages/${turn.body.reply.id}`)).body.status).toBe("completed");
  });
});

