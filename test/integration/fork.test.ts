import { describe, expect, it } from "vitest";
import { apiClient } from "../support/http.ts";
import { seedApiKeyFor } from "../support/keys.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

const ctx = useServiceWithFakeUpstream();
/** A conversation of three finished turns: six messages. */
async function threeTurns() {
  const { body: conv } = await ctx.api.post("/conversations", { model: "fake-model", system: "Be brief.", title: "trip", metadata: { app: "t" }, context_strategy: "strict" });
  for (const q of ["first?", "second?", "third?"]) expect((await ctx.api.post(`/conversations/${conv.id}/messages`, { content: q })).status).toBe(201);
  const { body: page } = await ctx.api.get(`/conversations/${conv.id}/messages`);
  return { id: conv.id as string, messages: page.data as any[] };
}

const shape = (m: any) => ({ seq: m.seq, role: m.role, content: m.content, status: m.status, tokens: m.tokens, usage: m.usage });

describe("forking a conversation", () => {
  it("copies the settings and the history up to the message, and goes its own way from there", async () => {
    const source = await threeTurns();
    const at = source.messages[3]; // the second reply
    const res = await ctx.api.post(`/conversations/${source.id}/fork`, { message_id: at.id, title: "trip, take two" });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ model: "fake-model", system: "Be brief.", title: "trip, take two", metadata: { app: "t" }, context_strategy: "strict", message_count: 4 });
    expect(res.body.id).not.toBe(source.id);

    const { body: forked } = await ctx.api.get(`/conversations/${res.body.id}/messages`);
    expect(forked.data.map(shape)).toEqual(source.messages.slice(0, 4).map(shape));
    expect(forked.data.every((m: any) => m.conversation_id === res.body.id && !source.messages.some((s) => s.id === m.id))).toBe(true);

    // A turn on the fork sends the fork's history, not the source's third turn.
    const turn = await ctx.api.post(`/conversations/${res.body.id}/messages`, { content: "another third?" });
    expect(turn.body.message.seq).toBe(5);
    expect(ctx.upstream.requests.at(-1)?.body.messages.map((m: any) => m.content)).toEqual([
      "Be brief.",
      ...source.messages.slice(0, 4).map((m) => m.content),
      "another third?",
    ]);
    // The source is untouched, and deleting it leaves the fork whole.
    expect((await ctx.api.get(`/conversations/${source.id}/messages`)).body.data.map(shape)).toEqual(source.messages.map(shape));
    expect((await ctx.api.delete(`/conversations/${source.id}`)).status).toBe(200);
    expect((await ctx.api.get(`/conversations/${res.body.id}/messages`)).body.data).toHaveLength(6);
  });

  it("answers 404 for an unknown message or one of another conversation or tenant, and 400 at a reply in flight", async () => {
    const source = await threeTurns();
    const other = await threeTurns();
    const before = await ctx.service.sql`select count(*)::int as n from conversations`;

    const unknown = await ctx.api.post(`/conversations/${source.id}/fork`, { message_id: "msg_01jf3t8vvaf8s9k0d7k6x1s2y3" });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ param: "message_id", code: "not_found" });
    expect((await ctx.api.post(`/conversations/${source.id}/fork`, { message_id: other.messages[0].id })).status).toBe(404);
    const stranger = apiClient(`${ctx.service.url}/v1`, await seedApiKeyFor(ctx.service.sql, "stranger"));
    expect((await stranger.post(`/conversations/${source.id}/fork`, { message_id: source.messages[0].id })).status).toBe(404);
    expect((await ctx.api.post(`/conversations/${source.id}/fork`, {})).status).toBe(400);

    ctx.upstream.setBehaviour({ kind: "hang" });
    const pending = await ctx.api.post(`/conversations/${source.id}/messages`, { content: "fourth?", wait: false });
    const inFlight = await ctx.api.post(`/conversations/${source.id}/fork`, { message_id: pending.body.reply.id });
    expect(inFlight.status).toBe(400);
    expect(inFlight.body.error.code).toBe("reply_in_flight");
    // Forking at the question before it works.
    const ok = await ctx.api.post(`/conversations/${source.id}/fork`, { message_id: pending.body.message.id });
    expect(ok.status).toBe(201);
    expect(ok.body.message_count).toBe(7);
    expect((await ctx.service.sql`select count(*)::int as n from conversations`)[0]!.n).toBe(before[0]!.n + 1);
    await ctx.api.post(`/conversations/${source.id}/messages/${pending.body.reply.id}/cancel`);
  });
});
