import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { boundOpenAI, openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * A thinking model through Parley: reasoning streamed for longer than the first-token limit is life
 * (the call is neither failed nor made again), reasoning is relayed to the openai SDK as
 * `delta.reasoning_content` whatever the upstream named it, and stored apart from the reply's content.
 */

const FIRST_TOKEN_LIMIT_MS = 1000;
/** Reasoning deltas this far apart: the first well within the limit, the content well past it. */
const THINK_STEP_MS = 250;
const thoughts = ["Let", " me", " think", " about", " the", " weather", " in", " Lisbon."];

const ctx = useServiceWithFakeUpstream({ overrides: { UPSTREAM_FIRST_TOKEN_TIMEOUT_MS: FIRST_TOKEN_LIMIT_MS } });

const openai = () => openaiAt(`${ctx.service.url}/v1`);

/** Reads a stream: the reasoning and content it carried, in the order they came. */
async function readStream(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const order: ("reasoning" | "content")[] = [];
  let reasoning = "";
  let content = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    const delta = choice?.delta as (OpenAI.ChatCompletionChunk.Choice.Delta & { reasoning_content?: string }) | undefined;
    if (delta?.reasoning_content) {
      reasoning += delta.reasoning_content;
      if (order.at(-1) !== "reasoning") order.push("reasoning");
    }
    if (delta?.content) {
      content += delta.content;
      if (order.at(-1) !== "content") order.push("content");
    }
    finish = choice?.finish_reason ?? finish;
  }
  return { order, reasoning, content, finish };
}

describe("a model that thinks longer than the first-token limit", () => {
  for (const field of ["reasoning_content", "reasoning"] as const) {
    it(`is neither failed nor called twice, and its reasoning (sent as ${field}) reaches the SDK as delta.reasoning_content`, async () => {
      ctx.upstream.setBehaviour({ kind: "ok", reasoning: thoughts, reasoningField: field, reasoningDelayMs: THINK_STEP_MS, noRoleChunk: true });
      expect(thoughts.length * THINK_STEP_MS).toBeGreaterThan(FIRST_TOKEN_LIMIT_MS * 1.5);

      const stream = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Lisbon?" }], stream: true });
      expect(await readStream(stream)).toEqual({ order: ["reasoning", "content"], reasoning: thoughts.join(""), content: "Reply to: Lisbon?", finish: "stop" });
      expect(ctx.upstream.requests).toHaveLength(1);
    });
  }

  it("on the bound endpoint: the reply stores its reasoning apart, and the next turn does not send it back", async () => {
    const { id, client: bound } = await boundOpenAI(ctx);
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: thoughts, reasoningDelayMs: THINK_STEP_MS, noRoleChunk: true });

    const stream = await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Lisbon?" }], stream: true });
    const read = await readStream(stream);
    expect(read).toMatchObject({ reasoning: thoughts.join(""), content: "Reply to: Lisbon?", finish: "stop" });
    expect(ctx.upstream.requests).toHaveLength(1);

    const stored = (await ctx.api.get(`/conversations/${id}/messages`)).body.data as any[];
    expect(stored.map((m) => [m.role, m.status, m.content])).toEqual([
      ["user", "completed", "Lisbon?"],
      ["assistant", "completed", "Reply to: Lisbon?"],
    ]);
    expect(stored[1]?.reasoning).toBe(thoughts.join(""));

    ctx.upstream.setBehaviour({ kind: "ok" });
    await bound.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "And Porto?" }] });
    expect(ctx.upstream.requests[1]?.body.messages).toEqual([
      { role: "user", content: "Lisbon?" },
      { role: "assistant", content: "Reply to: Lisbon?" },
      { role: "user", content: "And Porto?" },
    ]);

    // Asked for (Parley's own `send_reasoning`, not passed on): the stored reasoning goes back with its reply.
    await bound.chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "And Faro?" }],
      send_reasoning: true,
    } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    expect(ctx.upstream.requests[2]?.body.messages[1]).toEqual({ role: "assistant", content: "Reply to: Lisbon?", reasoning_content: thoughts.join("") });
    expect(ctx.upstream.requests[2]?.body).not.toHaveProperty("send_reasoning");
  });
});

describe("reasoning without streaming", () => {
  it("comes back as message.reasoning_content beside the content", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", reasoning: ["Short", " thought."] });
    const completion = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Hi" }] });
    expect(completion.choices[0]?.message).toMatchObject({ content: "Reply to: Hi", reasoning_content: "Short thought." });
  });
});
