import { describe, expect, it } from "vitest";
import { messageTokens } from "../../src/context/tokens.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

// gpt-4.1's window (about a million tokens) takes a million-character message whole.
const MODEL = "gpt-4.1-fake";
const ctx = useServiceWithFakeUpstream({ models: [MODEL] });

async function storedUserMessage(conversationId: string) {
  const [row] = await ctx.service.sql`select content, tokens from messages where conversation_id = ${conversationId} and role = 'user'`;
  return row as { content: string; tokens: number };
}

describe("counting a message's tokens", () => {
  it("takes special-token text in content as plain text", async () => {
    const { body: conv } = await ctx.api.post("/conversations", { model: MODEL });
    const content = "what does <|endoftext|> mean, and <|im_start|>?";
    const turn = await ctx.api.post(`/conversations/${conv.id}/messages`, { content });
    expect(turn.status).toBe(201);
    expect(await storedUserMessage(conv.id)).toEqual({ content, tokens: messageTokens(content) });
  });

  // Counted whole, either run kept the process busy for minutes (BPE cost grows with the square of a run).
  it.each([
    ["one character", "a".repeat(1_000_000)],
    ["a two-character pattern", "ab".repeat(500_000)],
  ])("answers an append of a million-character run of %s, and a small turn sent with it", async (_, content) => {
    const [big, small] = await Promise.all([ctx.api.post("/conversations", { model: MODEL }), ctx.api.post("/conversations", { model: MODEL })]);
    const [bigTurn, smallTurn] = await Promise.all([
      ctx.api.post(`/conversations/${big.body.id}/messages`, { content }),
      ctx.api.post(`/conversations/${small.body.id}/messages`, { content: "hello?" }),
    ]);
    expect(smallTurn.status).toBe(201);
    expect(bigTurn.status).toBe(201);
    const stored = await storedUserMessage(big.body.id);
    expect(stored.content.length).toBe(content.length);
    expect(stored.tokens).toBe(messageTokens(content));
  }, 120_000);
});
