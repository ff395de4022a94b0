import { describe, expect, it } from "vitest";
import { ContextWindows } from "../../src/context/context-windows.ts";
import { messageTokens } from "../../src/context/tokens.ts";
import { turnBudget } from "../../src/context/turn-budget.ts";
import { SUMMARY_INSTRUCTIONS } from "../../src/domain/summaries.ts";
import { summaryMessageTokens } from "../../src/domain/summary-message.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/** Text of exactly `n` tokens in o200k_base ("hello" and " hello" are one token each), as a message of n + 4. */
const wordsOf = (n: number) => "hello ".repeat(n).trim();
const messageOf = (tokens: number) => wordsOf(tokens - 4);

// A 300-token window with 50 kept for the reply: 250 for the system prompt and the messages.
const WINDOW = { context: 300, reserve: 50 };
const HISTORY_BUDGET = WINDOW.context - WINDOW.reserve;

const ctx = useServiceWithFakeUpstream({
  models: ["fake-small"],
  overrides: {
    MODEL_CONTEXT_WINDOWS: [{ models: ["fake-small"], context_tokens: WINDOW.context, reply_reserve_tokens: WINDOW.reserve, token_ratio: 1 }],
  },
});

/** A conversation holding `history` (user and assistant alternating), and what its turns send ctx.upstream. */
async function conversationWith(history: string[], extra: Record<string, unknown> = {}) {
  const res = await ctx.api.post("/conversations", {
    model: "fake-small",
    messages: history.map((content, i) => ({ role: i % 2 === 0 ? "user" : "assistant", content })),
    ...extra,
  });
  expect(res.status).toBe(201);
  return res.body.id as string;
}
const sentUpstream = () => ctx.upstream.requests.at(-1)?.body.messages as { role: string; content: string }[];

describe("a turn's history fits the model's window", () => {
  it("sends everything when the history exactly fits, and records what was sent", async () => {
    const history = [messageOf(100), messageOf(100)];
    const id = await conversationWith(history);
    const turn = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(50) });
    expect(turn.status).toBe(201);
    expect(sentUpstream().map((m) => m.content)).toEqual([...history, messageOf(50)]);
    expect(turn.body.reply.context).toEqual({ messages: 3, tokens: HISTORY_BUDGET });
    expect(turn.body.message.tokens).toBe(50);
    expect(turn.body.reply.tokens).toBe(messageTokens(turn.body.reply.content));
  });

  it("drops the oldest message, whole, when the history is one token over", async () => {
    const history = [messageOf(100), messageOf(100)];
    const id = await conversationWith(history);
    const turn = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(51) });
    expect(turn.status).toBe(201);
    expect(sentUpstream().map((m) => m.content)).toEqual([history[1], messageOf(51)]);
    expect(turn.body.reply.context).toEqual({ messages: 2, tokens: 151 });
  });

  it("always sends the system prompt, and counts it against the window", async () => {
    const system = wordsOf(20); // 24 tokens: 226 left for messages
    const history = [messageOf(100), messageOf(76), messageOf(50)];
    const id = await conversationWith(history, { system });
    const turn = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(100) });
    expect(sentUpstream()).toEqual([
      { role: "system", content: system },
      { role: "assistant", content: history[1] },
      { role: "user", content: history[2] },
      { role: "user", content: messageOf(100) },
    ]);
    expect(turn.body.reply.context).toEqual({ messages: 3, tokens: 24 + 76 + 50 + 100 });
  });

  it("keeps the newest messages turn after turn, in order, and leaves failed replies out of the count", async () => {
    const id = await conversationWith([]);
    ctx.upstream.queueBehaviour({ kind: "status", status: 400 });
    const failed = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(60) });
    expect(failed.body.reply.status).toBe("failed");
    for (let i = 0; i < 4; i++) {
      const turn = await ctx.api.post(`/conversations/${id}/messages`, { content: `${messageOf(60)} ${i}` });
      expect(turn.body.reply.status).toBe("completed");
    }
    const { body: page } = await ctx.api.get(`/conversations/${id}/messages?limit=100`);
    const stored = page.data as { role: string; status: string; content: string; tokens: number }[];
    const sent = sentUpstream();
    // What was sent is a suffix of the history without the failed reply, and the next older message would not fit.
    const eligible = stored.slice(0, -1).filter((m) => m.status !== "failed");
    const suffix = eligible.slice(eligible.length - sent.length);
    expect(sent.map((m) => m.content)).toEqual(suffix.map((m) => m.content));
    const sentTokens = suffix.reduce((n, m) => n + m.tokens, 0);
    expect(sentTokens).toBeLessThanOrEqual(HISTORY_BUDGET);
    expect(sentTokens + eligible[eligible.length - sent.length - 1]!.tokens).toBeGreaterThan(HISTORY_BUDGET);
    // Running totals in the database match the counts: failed replies add nothing, nor does the user message of
    // the turn whose reply failed before saying anything (it is marked failed too).
    const rows = await ctx.service.sql`select role, status, tokens, history_tokens from messages where conversation_id = ${id} order by seq`;
    expect(rows[0]).toMatchObject({ role: "user", status: "failed" });
    let running = 0;
    for (const row of rows) {
      if (row.status !== "failed") running += row.tokens;
      expect(Number(row.history_tokens)).toBe(running);
    }
  });
});

describe("a turn that can never fit", () => {
  it("is a 400 naming the sizes when the new message alone is larger than the window, and stores nothing", async () => {
    const id = await conversationWith([messageOf(10)]);
    const tooBig = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(HISTORY_BUDGET + 1) });
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.error).toMatchObject({ type: "invalid_request_error", param: "content", code: "context_length_exceeded" });
    expect(tooBig.body.error.message).toContain(`${HISTORY_BUDGET + 1} tokens`);
    expect(tooBig.body.error.message).toContain("fake-small has 300");
    // A larger max_tokens leaves less room: 300 - 200 = 100.
    const reserved = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(101), params: { max_tokens: 200 } });
    expect(reserved.status).toBe(400);
    expect(reserved.body.error.message).toContain("200 are kept for the reply");
    expect((await ctx.api.get(`/conversations/${id}`)).body.message_count).toBe(1);
    expect(ctx.upstream.requests).toHaveLength(0);
    // Without a reply nothing is sent, so nothing is too large.
    expect((await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(HISTORY_BUDGET + 1), reply: false })).status).toBe(201);
  });

  it("names `messages` on the conversation-bound chat completions endpoint", async () => {
    const id = await conversationWith([]);
    const res = await ctx.api.post(`/conversations/${id}/chat/completions`, {
      model: "fake-small",
      messages: [{ role: "user", content: messageOf(HISTORY_BUDGET + 1) }],
    });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ param: "messages", code: "context_length_exceeded" });
  });
});

describe("the strict strategy", () => {
  it("refuses a turn whose whole history does not fit, until the conversation is switched to auto", async () => {
    const history = [messageOf(100), messageOf(100)];
    const id = await conversationWith(history, { context_strategy: "strict" });
    expect((await ctx.api.get(`/conversations/${id}`)).body.context_strategy).toBe("strict");

    const over = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(51) });
    expect(over.status).toBe(400);
    expect(over.body.error.code).toBe("context_length_exceeded");
    expect(over.body.error.message).toContain("251 tokens");
    expect((await ctx.api.get(`/conversations/${id}`)).body.message_count).toBe(2);

    const patched = await ctx.api.patch(`/conversations/${id}`, { context_strategy: "auto" });
    expect(patched.body.context_strategy).toBe("auto");
    const turn = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(51) });
    expect(turn.status).toBe(201);
    expect(sentUpstream().map((m) => m.content)).toEqual([history[1], messageOf(51)]);
  });

  it("takes a turn that exactly fits, and refuses an unknown strategy", async () => {
    const id = await conversationWith([messageOf(100), messageOf(100)], { context_strategy: "strict" });
    expect((await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(50) })).status).toBe(201);
    const bad = await ctx.api.patch(`/conversations/${id}`, { context_strategy: "everything" });
    expect(bad.status).toBe(400);
    expect(bad.body.error.param).toBe("context_strategy");
  });
});

describe("the summarize strategy", () => {
  const isSummaryCall = (r: { body: any }) => r.body.messages[0]?.content === SUMMARY_INSTRUCTIONS;
  const summaryCalls = () => ctx.upstream.requests.filter(isSummaryCall).map((r) => r.body.messages[1].content as string);
  const replyCall = () => ctx.upstream.requests.filter((r) => !isSummaryCall(r)).at(-1)?.body.messages as { role: string; content: string }[];
  async function summaryThrough(id: string, seq: number) {
    for (let i = 0; i < 200; i++) {
      const { body } = await ctx.api.get(`/conversations/${id}`);
      if (body.summary?.through_seq === seq) return body.summary;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`no summary through ${seq}`);
  }

  it("folds the messages that no longer fit into a running summary, incrementally, sent after the system prompt", async () => {
    const history = [messageOf(100), messageOf(100)];
    const id = await conversationWith(history, { context_strategy: "summarize" });

    // Turn 1: 251 tokens, so message 1 is left out and summarized in the background.
    ctx.upstream.setBehaviour({ kind: "ok", text: "S1" });
    const turn1 = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(51) });
    expect(replyCall().map((m) => m.content)).toEqual([history[1], messageOf(51)]);
    expect(turn1.body.reply.context).toEqual({ messages: 2, tokens: 151 });
    const first = await summaryThrough(id, 1);
    expect(first).toMatchObject({ content: "S1", tokens: summaryMessageTokens("S1") });
    expect(summaryCalls()).toEqual([`Summary so far:\n(none yet)\n\nNew turns:\nuser: ${history[0]}`]);

    // Turn 2: the summary goes after the system prompt and counts against the window; message 2 is left out now,
    // and the next summary gets the previous one and that message only.
    ctx.upstream.setBehaviour({ kind: "ok", text: "S2" });
    const turn2 = await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(100) });
    expect(replyCall()).toEqual([
      { role: "system", content: "Summary of the earlier conversation:\nS1" },
      { role: "user", content: messageOf(51) },
      { role: "assistant", content: "S1" },
      { role: "user", content: messageOf(100) },
    ]);
    expect(turn2.body.reply.context).toEqual({ messages: 3, tokens: summaryMessageTokens("S1") + 51 + messageTokens("S1") + 100 });
    const second = await summaryThrough(id, 2);
    expect(second.content).toBe("S2");
    expect(summaryCalls()).toEqual([
      `Summary so far:\n(none yet)\n\nNew turns:\nuser: ${history[0]}`,
      `Summary so far:\nS1\n\nNew turns:\nassistant: ${history[1]}`,
    ]);
  });

  it("sends the whole history and asks for no summary while everything fits", async () => {
    const id = await conversationWith([messageOf(50)], { context_strategy: "summarize" });
    await ctx.api.post(`/conversations/${id}/messages`, { content: messageOf(50) });
    expect(replyCall()).toHaveLength(2);
    expect(summaryCalls()).toEqual([]);
    expect((await ctx.api.get(`/conversations/${id}`)).body.summary).toBeNull();
  });
});

describe("a conversation of 100,000 messages", () => {
  it("still answers, sending only the newest messages that fit, in order", async () => {
    const id = await conversationWith([]);
    const n = 100_000;
    // Stored as Parley stores them: each "message number s" is counted, with running totals.
    await ctx.service.sql`
      insert into messages (id, tenant_id, conversation_id, seq, role, content, status, tokens, history_tokens, completed_at)
      select 'msg_seed' || lpad(s::text, 9, '0'), 'test', ${id}, s, case when s % 2 = 1 then 'user' else 'assistant' end,
             'message number ' || lpad(s::text, 6, '0'), 'completed', 9, 9 * s, now()
      from generate_series(1, ${n}::int) s`;
    await ctx.service.sql`update conversations set last_seq = ${n}, message_count = ${n} where id = ${id}`;
    expect(messageTokens("message number 099999")).toBe(9);

    const turn = await ctx.api.post(`/conversations/${id}/messages`, { content: "and now?" });
    expect(turn.status).toBe(201);
    expect(turn.body.reply.status).toBe("completed");
    const sent = sentUpstream();
    const newTokens = messageTokens("and now?");
    const fits = Math.floor((HISTORY_BUDGET - newTokens) / 9);
    expect(sent).toHaveLength(fits + 1);
    expect(sent.slice(0, -1).map((m) => m.content)).toEqual(
      Array.from({ length: fits }, (_, i) => `message number ${String(n - fits + 1 + i).padStart(6, "0")}`),
    );
    expect(sent.at(-1)).toEqual({ role: "user", content: "and now?" });
    expect(turn.body.reply.context).toEqual({ messages: fits + 1, tokens: fits * 9 + newTokens });
  });
});

describe("token counts and windows", () => {
  it("counts with o200k_base plus 4 tokens of message framing", () => {
    expect(messageTokens("Hello, how are you today?")).toBe(7 + 4);
    expect(messageTokens("")).toBe(4);
    expect(messageTokens(wordsOf(1000))).toBe(1004);
  });

  it("takes a model's window from config first, then its family, then the default", () => {
    const windows = new ContextWindows(
      [{ match: "llama-3.3", models: [], context_tokens: 32_000, reply_reserve_tokens: 2_000, token_ratio: 1.1 }],
      { contextTokens: 8_192, replyReserveTokens: 1_024, tokenRatio: 1 },
    );
    expect(windows.forModel("meta-llama/Llama-3.3-70B-Instruct-Turbo")).toEqual({ contextTokens: 32_000, replyReserveTokens: 2_000, tokenRatio: 1.1 });
    expect(windows.forModel("meta-llama/Llama-3.1-8B-Instruct")).toEqual({ contextTokens: 131_072, replyReserveTokens: 4_096, tokenRatio: 1 });
    expect(windows.forModel("gpt-4o-mini")).toEqual({ contextTokens: 128_000, replyReserveTokens: 16_384, tokenRatio: 1 });
    expect(windows.forModel("mistralai/Mistral-7B-Instruct-v0.3")).toEqual({ contextTokens: 32_768, replyReserveTokens: 4_096, tokenRatio: 1.25 });
    expect(windows.forModel("parley-sim-1")).toEqual({ contextTokens: 8_192, replyReserveTokens: 1_024, tokenRatio: 1 });
    expect(windows.forModel("something-else")).toEqual({ contextTokens: 8_192, replyReserveTokens: 1_024, tokenRatio: 1 });
  });

  it("leaves room for a model whose tokenizer makes more tokens than o200k_base", () => {
    const budget = turnBudget("mistral-small", { contextTokens: 32_768, replyReserveTokens: 4_096, tokenRatio: 1.25 }, null, {});
    expect(budget.historyTokens).toBe(Math.floor((32_768 - 4_096) / 1.25));
  });
});
