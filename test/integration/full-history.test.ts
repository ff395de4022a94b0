import OpenAI from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { useServiceWithFakeUpstream } from "../support/service.ts";
import { TEST_API_KEY } from "../support/keys.ts";

// One retry upstream per reply keeps failing turns quick; the SDK's own retries are what is under test.
const ctx = useServiceWithFakeUpstream({ overrides: { UPSTREAM_MAX_RETRIES: 1, UPSTREAM_RETRY_BASE_MS: 1 } });
beforeEach(() => ctx.upstream.reset());

type Msg = { role: "system" | "user" | "assistant"; content: string };
const SYSTEM = "You are a terse travel guide.";

async function newConversation(extra: Record<string, unknown> = {}): Promise<string> {
  const res = await ctx.api.post("/conversations", { model: "fake-model", system: SYSTEM, ...extra });
  expect(res.status).toBe(201);
  return res.body.id;
}

/** The openai SDK pointed at a conversation, as an app using the bound endpoint is. */
const boundClient = (conversationId: string, maxRetries = 0) =>
  new OpenAI({ baseURL: `${ctx.service.url}/v1/conversations/${conversationId}`, apiKey: TEST_API_KEY, maxRetries });

const stored = async (conversationId: string) =>
  ctx.service.sql<{ seq: number; role: string; status: string; content: string; error: any; tokens: number; history_tokens: string }[]>`
    select seq, role, status, content, error, tokens, history_tokens from messages where conversation_id = ${conversationId} order by seq`;

const sentUpstream = () => ctx.upstream.requests.map((r) => r.body.messages as Msg[]);

describe("a full-history client on the bound endpoint", () => {
  it("stores each message once over four turns, and the upstream gets each message once per turn", async () => {
    const id = await newConversation();
    const openai = boundClient(id);
    const history: Msg[] = [{ role: "system", content: SYSTEM }];
    for (let turn = 1; turn <= 4; turn++) {
      history.push({ role: "user", content: `question ${turn}` });
      const completion = await openai.chat.completions.create({ model: "fake-model", messages: history });
      history.push({ role: "assistant", content: completion.choices[0]!.message.content! });
    }
    const rows = await stored(id);
    expect(rows.map((r) => [r.role, r.content])).toEqual(history.slice(1).map((m) => [m.role, m.content]));
    expect(rows.every((r) => r.status === "completed")).toBe(true);
    // Turn n sent the system prompt once and each earlier message once.
    const sent = sentUpstream();
    expect(sent).toHaveLength(4);
    for (const [i, messages] of sent.entries()) expect(messages).toEqual(history.slice(0, 2 + 2 * i));
    const { body: conversation } = await ctx.api.get(`/conversations/${id}`);
    expect(conversation.message_count).toBe(8);
  });

  it("streams too: a whole-history request stores only the new user message and the reply", async () => {
    const id = await newConversation();
    const openai = boundClient(id);
    const first = await openai.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "hi" }] });
    const stream = await openai.chat.completions.create({
      model: "fake-model",
      stream: true,
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: first.choices[0]!.message.content! },
        { role: "user", content: "and then?" },
      ],
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(text).toBe(ctx.upstream.replyTextFor("and then?"));
    expect((await stored(id)).map((r) => r.content)).toEqual(["hi", first.choices[0]!.message.content, "and then?", text]);
  });

  it("appends a history that diverges from the stored one as sent", async () => {
    const id = await newConversation();
    const openai = boundClient(id);
    const first = await openai.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "one" }] });
    const answer = first.choices[0]!.message.content!;
    // The first message differs from the stored one: nothing is taken as stored.
    const diverging: Msg[] = [
      { role: "user", content: "one, edited" },
      { role: "assistant", content: answer },
      { role: "user", content: "two" },
    ];
    await openai.chat.completions.create({ model: "fake-model", messages: diverging });
    const rows = await stored(id);
    expect(rows.map((r) => r.content)).toEqual(["one", answer, ...diverging.map((m) => m.content), ctx.upstream.replyTextFor("two")]);
    expect(sentUpstream().at(-1)).toEqual([
      { role: "system", content: SYSTEM },
      { role: "user", content: "one" },
      { role: "assistant", content: answer },
      ...diverging,
    ]);
  });

  it("takes a leading system message as stored only when it is the conversation's system prompt", async () => {
    const id = await newConversation();
    const openai = boundClient(id);
    await openai.chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "system", content: "Another prompt." },
        { role: "user", content: "hello" },
      ],
    });
    expect((await stored(id)).map((r) => [r.role, r.content])).toEqual([
      ["system", "Another prompt."],
      ["user", "hello"],
      ["assistant", ctx.upstream.replyTextFor("hello")],
    ]);
    // That system message is now part of the stored history, and is matched as such.
    await openai.chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "system", content: "Another prompt." },
        { role: "user", content: "hello" },
        { role: "assistant", content: ctx.upstream.replyTextFor("hello") },
        { role: "user", content: "again" },
      ],
    });
    expect((await stored(id)).map((r) => r.content).slice(3)).toEqual(["again", ctx.upstream.replyTextFor("again")]);
  });

  it("compares tool calls, tool results, names and image parts too", async () => {
    const weather = { type: "function" as const, function: { name: "weather", parameters: { type: "object", properties: {} } } };
    const user = {
      role: "user" as const,
      name: "ana",
      content: [
        { type: "text" as const, text: "Weather where this was taken?" },
        { type: "image_url" as const, image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
      ],
    };
    const tool = { role: "tool" as const, tool_call_id: "call_1", content: "sunny" };
    /** A conversation whose stored history is the user's message and the reply calling the tool. */
    const calledTool = async () => {
      const id = await newConversation();
      ctx.upstream.setBehaviour({ kind: "ok", toolCalls: [{ id: "call_1", name: "weather", arguments: '{"city":"Lisbon"}' }] });
      const calling = await boundClient(id).chat.completions.create({ model: "fake-model", messages: [user], tools: [weather] });
      expect(calling.choices[0]!.message.tool_calls).toHaveLength(1);
      ctx.upstream.setBehaviour({ kind: "ok", text: "Sunny." });
      return { id, assistant: calling.choices[0]!.message };
    };
    const roles = async (id: string) => (await stored(id)).map((r) => r.role);

    const same = await calledTool();
    await boundClient(same.id).chat.completions.create({ model: "fake-model", messages: [user, same.assistant, tool], tools: [weather] });
    expect(await roles(same.id)).toEqual(["user", "assistant", "tool", "assistant"]);

    // Other call arguments, another image, another name: another history, appended as sent.
    const otherArguments = await calledTool();
    const otherCall = { ...otherArguments.assistant, tool_calls: [{ id: "call_1", type: "function" as const, function: { name: "weather", arguments: '{"city":"Porto"}' } }] };
    const otherImage = { ...user, content: [user.content[0]!, { type: "image_url" as const, image_url: { url: "https://example.com/a.png" } }] };
    const otherName = { ...user, name: "bo" };
    for (const [conversation, messages] of [
      [otherArguments, [user, otherCall, tool]],
      [await calledTool(), [otherImage, "assistant", tool]],
      [await calledTool(), [otherName, "assistant", tool]],
    ] as const) {
      const sent = messages.map((m) => (m === "assistant" ? conversation.assistant : m));
      await boundClient(conversation.id).chat.completions.create({ model: "fake-model", messages: sent as never, tools: [weather] });
      expect(await roles(conversation.id)).toEqual(["user", "assistant", "user", "assistant", "tool", "assistant"]);
    }
  });

  it("answers the stored history without storing it again when the request is exactly that history", async () => {
    const id = await newConversation();
    expect((await ctx.api.post(`/conversations/${id}/messages`, { content: "waiting for an answer", reply: false })).status).toBe(201);
    const openai = boundClient(id);
    const completion = await openai.chat.completions.create({
      model: "fake-model",
      messages: [
        { role: "system", content: SYSTEM },
        { role: "user", content: "waiting for an answer" },
      ],
    });
    expect(completion.choices[0]!.message.content).toBe(ctx.upstream.replyTextFor("waiting for an answer"));
    expect((await stored(id)).map((r) => r.role)).toEqual(["user", "assistant"]);
  });
});

describe("failed turns do not pile up", () => {
  it("an SDK retrying a turn the upstream fails (500) stacks no copies: the next turn sends the user's message once", async () => {
    const id = await newConversation();
    const first = await boundClient(id).chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "one" }] });
    const history: Msg[] = [
      { role: "system", content: SYSTEM },
      { role: "user", content: "one" },
      { role: "assistant", content: first.choices[0]!.message.content! },
      { role: "user", content: "two" },
    ];
    ctx.upstream.setBehaviour({ kind: "status", status: 500, body: { error: { message: "overloaded", type: "server_error" } } });
    // The SDK tries three times; Parley tries the upstream twice for each.
    const failing = boundClient(id, 2);
    await expect(failing.chat.completions.create({ model: "fake-model", messages: history })).rejects.toMatchObject({ status: 502 });
    expect(ctx.upstream.requests).toHaveLength(1 + 3 * 2);

    // Each failed attempt is stored, its user message marked and left out of history.
    const rows = await stored(id);
    const attempts = rows.slice(2);
    expect(attempts.map((r) => [r.role, r.status])).toEqual([
      ["user", "failed"],
      ["assistant", "failed"],
      ["user", "failed"],
      ["assistant", "failed"],
      ["user", "failed"],
      ["assistant", "failed"],
    ]);
    for (const row of attempts.filter((r) => r.role === "user")) {
      expect(row.error).toMatchObject({ code: "reply_failed" });
      expect(row.error.message).toContain("failed before producing anything");
    }
    // Nothing left out counts in the running totals the context window relies on.
    const before = rows[0]!.tokens + rows[1]!.tokens;
    expect(rows.map((r) => Number(r.history_tokens))).toEqual([rows[0]!.tokens, ...rows.slice(1).map(() => before)]);
    const { body: page } = await ctx.api.get(`/conversations/${id}/messages`);
    expect(page.data[2]).toMatchObject({ role: "user", content: "two", status: "failed", error: { code: "reply_failed" } });

    // The user tries again once the upstream is back: the upstream gets "two" once.
    ctx.upstream.setBehaviour({ kind: "ok" });
    const again = await boundClient(id).chat.completions.create({ model: "fake-model", messages: history });
    expect(again.choices[0]!.message.content).toBe(ctx.upstream.replyTextFor("two"));
    expect(sentUpstream().at(-1)).toEqual(history);
    // And the turn after it too.
    const next = [...history, { role: "assistant" as const, content: again.choices[0]!.message.content! }, { role: "user" as const, content: "three" }];
    await boundClient(id).chat.completions.create({ model: "fake-model", messages: next });
    expect(sentUpstream().at(-1)).toEqual(next);
    expect((await stored(id)).filter((r) => r.status === "completed").map((r) => r.content)).toEqual(next.slice(1).map((m) => m.content).concat(ctx.upstream.replyTextFor("three")));
  });

  it("a turn the upstream refuses (400) and the user sends again reaches the upstream once", async () => {
    const id = await newConversation();
    ctx.upstream.queueBehaviour({ kind: "status", status: 400, body: { error: { message: "bad request", type: "invalid_request_error" } } });
    const messages: Msg[] = [{ role: "user", content: "please" }];
    // The SDK may retry by itself (Parley once answered a refusal with a 502) or raise; then the user sends it again.
    const answered = await boundClient(id, 2)
      .chat.completions.create({ model: "fake-model", messages })
      .catch(() => boundClient(id).chat.completions.create({ model: "fake-model", messages }));
    expect(answered.choices[0]!.message.content).toBe(ctx.upstream.replyTextFor("please"));
    expect(ctx.upstream.requests).toHaveLength(2);
    expect(sentUpstream().at(-1)).toEqual([{ role: "system", content: SYSTEM }, ...messages]);
    const rows = await stored(id);
    expect(rows.at(-2)).toMatchObject({ role: "user", content: "please", status: "completed" });
    expect(rows.slice(0, -2).every((r) => r.status === "failed")).toBe(true);
    expect(rows.slice(0, -2).filter((r) => r.role === "user").every((r) => r.error.code === "reply_failed")).toBe(true);
  });

  it("on the messages API too: a failed-empty turn is left out, and regenerating its reply puts it back", async () => {
    const id = await newConversation();
    ctx.upstream.setBehaviour({ kind: "status", status: 500 });
    const failed = await ctx.api.post(`/conversations/${id}/messages`, { content: "lost" });
    expect(failed.body.reply.status).toBe("failed");
    // The waiting append's answer shows the mark already, as a later read does.
    expect(failed.body.message).toMatchObject({ status: "failed", error: { code: "reply_failed" } });
    expect((await ctx.api.get(`/conversations/${id}/messages/${failed.body.message.id}`)).body).toMatchObject({
      status: "failed",
      error: { code: "reply_failed" },
      tokens: failed.body.message.tokens,
    });
    ctx.upstream.setBehaviour({ kind: "ok" });
    const regenerated = await ctx.api.post(`/conversations/${id}/messages/${failed.body.reply.id}/regenerate`, {});
    expect(regenerated.body).toMatchObject({ status: "completed", content: ctx.upstream.replyTextFor("lost") });
    expect(sentUpstream().at(-1)).toEqual([
      { role: "system", content: SYSTEM },
      { role: "user", content: "lost" },
    ]);
    const rows = await stored(id);
    expect(rows.map((r) => [r.role, r.status, r.error])).toEqual([
      ["user", "completed", null],
      ["assistant", "completed", null],
    ]);
    expect(rows.map((r) => Number(r.history_tokens))).toEqual([rows[0]!.tokens, rows[0]!.tokens + rows[1]!.tokens]);
  });

  it("keeps a reply that failed after streaming text, and its turn, as before", async () => {
    const id = await newConversation();
    ctx.upstream.setBehaviour({ kind: "drop", afterTokens: 2 });
    const failed = await ctx.api.post(`/conversations/${id}/messages`, { content: "half an answer please" });
    expect(failed.body.reply).toMatchObject({ status: "failed" });
    expect(failed.body.reply.content).not.toBe("");
    const rows = await stored(id);
    expect(rows[0]).toMatchObject({ role: "user", status: "completed", error: null });
  });
});
