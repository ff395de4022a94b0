import { describe, expect, it } from "vitest";
import { messageTokens } from "../../src/context/tokens.ts";
import { authedFetch, readEvents } from "../support/http.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

const ctx = useServiceWithFakeUpstream();

async function twoTurns() {
  const { body: conv } = await ctx.api.post("/conversations", { model: "fake-model", system: "Be brief." });
  const first = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "first?" });
  const second = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "second?" });
  return { id: conv.id as string, first: first.body, second: second.body };
}

describe("regenerating the last reply", () => {
  it("replaces it: same seq, new id, generated from the same history, the old one gone", async () => {
    const { id, first, second } = await twoTurns();
    ctx.upstream.reset();
    const res = await ctx.api.post(`/conversations/${id}/messages/${second.reply.id}/regenerate`, { params: { temperature: 1.5 } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ role: "assistant", status: "completed", seq: second.reply.seq });
    expect(res.body.id).not.toBe(second.reply.id);
    // The model saw the history before the replaced reply, and the new params.
    const sent = ctx.upstream.requests.at(-1)?.body;
    expect(sent.messages.map((m: any) => m.content)).toEqual(["Be brief.", "first?", first.reply.content, "second?"]);
    expect(sent.temperature).toBe(1.5);

    expect((await ctx.api.get(`/conversations/${id}/messages/${second.reply.id}`)).status).toBe(404);
    const { body: page } = await ctx.api.get(`/conversations/${id}/messages`);
    expect(page.data.map((m: any) => m.id)).toEqual([first.message.id, first.reply.id, second.message.id, res.body.id]);
    expect((await ctx.api.get(`/conversations/${id}`)).body.message_count).toBe(4);

    // Running totals continue from the new reply: the next turn counts it, not the old one.
    const rows = await ctx.service.sql`select tokens, history_tokens from messages where conversation_id = ${id} order by seq`;
    expect(Number(rows.at(-1)!.history_tokens)).toBe(rows.reduce((n, r) => n + r.tokens, 0));
    expect(rows.at(-1)!.tokens).toBe(messageTokens(res.body.content));
    const next = await ctx.api.post(`/conversations/${id}/messages`, { content: "third?" });
    expect(next.body.reply.context.messages).toBe(5);
  });

  it("turns a failed reply into a new attempt, streamed or queued as asked", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { model: "fake-model" });
    ctx.upstream.queueBehaviour({ kind: "status", status: 400 });
    const failed = await ctx.api.post(`/conversations/${conv.id}/messages`, { content: "try me" });
    expect(failed.body.reply.status).toBe("failed");

    const streamed = await authedFetch(`${ctx.service.url}/v1/conversations/${conv.id}/messages/${failed.body.reply.id}/regenerate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ stream: true }),
    });
    expect(streamed.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { events } = await readEvents(streamed);
    expect(events.map((e) => e.event).filter((e) => e !== "message.delta")).toEqual(["message.created", "message.completed", "done"]);
    const completed = JSON.parse(events.at(-2)!.data);
    expect(completed.content).toBe("Reply to: try me");

    const queued = await ctx.api.post(`/conversations/${conv.id}/messages/${completed.id}/regenerate`, { wait: false });
    expect(queued.status).toBe(202);
    expect(queued.body.status).toBe("queued");
  });

  it("refuses anything but the conversation's last, ended reply", async () => {
    const { id, first, second } = await twoTurns();
    const notLast = await ctx.api.post(`/conversations/${id}/messages/${first.reply.id}/regenerate`, {});
    expect(notLast.status).toBe(400);
    expect(notLast.body.error.code).toBe("not_last_reply");
    const notReply = await ctx.api.post(`/conversations/${id}/messages/${second.message.id}/regenerate`, {});
    expect(notReply.status).toBe(400);
    expect(notReply.body.error.code).toBe("not_a_reply");
    const unknown = await ctx.api.post(`/conversations/${id}/messages/msg_01jf3t8vvaf8s9k0d7k6x1s2y3/regenerate`, {});
    expect(unknown.status).toBe(404);
    expect((await ctx.api.post(`/conversations/${id}/messages/${second.reply.id}/regenerate`, { stream: "yes" })).status).toBe(400);

    ctx.upstream.setBehaviour({ kind: "hang" });
    const pending = await ctx.api.post(`/conversations/${id}/messages`, { content: "third?", wait: false });
    const busy = await ctx.api.post(`/conversations/${id}/messages/${pending.body.reply.id}/regenerate`, {});
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe("conversation_busy");
    await ctx.api.post(`/conversations/${id}/messages/${pending.body.reply.id}/cancel`);
    // Nothing of the refused requests changed the history.
    const { body: page } = await ctx.api.get(`/conversations/${id}/messages`);
    expect(page.data.map((m: any) => m.id)).toEqual([first.message.id, first.reply.id, second.message.id, second.reply.id, pending.body.message.id, pending.body.reply.id]);
  });
});
