import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { boundOpenAI, openaiAt } from "../support/openai-clients.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";
import { eventually } from "../support/waiting.ts";

/*
 * What the openai SDK sends reaches the upstream in meaning, and what the upstream answers reaches the
 * SDK: several choices on the stateless endpoint (refused where a conversation must store one reply),
 * logprobs (relayed, and stored on a bound reply), `developer` and `name` kept; a stateless stream the
 * SDK abandons is ended upstream too.
 */

const ctx = useServiceWithFakeUpstream();

const openai = () => openaiAt(`${ctx.service.url}/v1`);
const bound = () => boundOpenAI(ctx);

describe("n > 1", () => {
  it("relays every choice on the stateless endpoint, non-streamed and streamed", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", honourN: true });
    const completion = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Hi" }], n: 2 });
    expect(completion.choices.map((c) => [c.index, c.message.content, c.finish_reason])).toEqual([
      [0, "Reply to: Hi", "stop"],
      [1, "Reply to: Hi (choice 1)", "stop"],
    ]);

    const stream = await openai().chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Hi" }], n: 2, stream: true });
    const texts = ["", ""];
    const finishes: (string | null)[] = [null, null];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        texts[c.index] += c.delta.content ?? "";
        finishes[c.index] = c.finish_reason ?? finishes[c.index]!;
      }
    }
    expect(texts).toEqual(["Reply to: Hi", "Reply to: Hi (choice 1)"]);
    expect(finishes).toEqual(["stop", "stop"]);
    expect(ctx.upstream.requests.map((r) => r.body.n)).toEqual([2, 2]);
  });

  it("is refused with a 400 naming n on the bound endpoint, which must store one reply", async () => {
    const { client } = await bound();
    await expect(client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Hi" }], n: 2 })).rejects.toMatchObject({
      status: 400,
      param: "n",
    });
    expect(ctx.upstream.requests).toHaveLength(0);
  });
});

describe("logprobs", () => {
  it("are passed on and relayed, streamed and not", async () => {
    ctx.upstream.setBehaviour({ kind: "ok", logprobs: true });
    const completion = await openai().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Hi" }],
      logprobs: true,
      top_logprobs: 2,
    });
    expect(completion.choices[0]?.logprobs?.content?.map((t) => t.token)).toEqual(["Reply", " to:", " Hi"]);
    expect(completion.choices[0]?.logprobs?.content?.[0]?.top_logprobs).toHaveLength(2);

    const stream = await openai().chat.completions.create({
      model: "fake-model",
      messages: [{ role: "user", content: "Hi" }],
      logprobs: true,
      top_logprobs: 1,
      stream: true,
    });
    const tokens: string[] = [];
    for await (const chunk of stream) tokens.push(...(chunk.choices[0]?.logprobs?.content ?? []).map((t) => t.token));
    expect(tokens).toEqual(["Reply", " to:", " Hi"]);
    expect(ctx.upstream.requests.map((r) => [r.body.logprobs, r.body.top_logprobs])).toEqual([
      [true, 2],
      [true, 1],
    ]);
  });

  it("are stored on the bound endpoint's reply", async () => {
    const { id, client } = await bound();
    ctx.upstream.setBehaviour({ kind: "ok", logprobs: true });
    await client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Hi" }], logprobs: true });
    const stored = (await ctx.api.get(`/conversations/${id}/messages`)).body.data as any[];
    expect(JSON.stringify(stored[1]?.logprobs)).toContain('"token":"Reply"');
  });
});

describe("messages as sent", () => {
  it("keep the developer role and name, on the stateless endpoint and in a bound conversation's later turns", async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: "developer", content: "Answer briefly." },
      { role: "user", content: "Hi", name: "ana" },
    ];
    await openai().chat.completions.create({ model: "fake-model", messages });
    expect(ctx.upstream.requests[0]?.body.messages).toEqual(messages);

    const { client } = await bound();
    await client.chat.completions.create({ model: "fake-model", messages });
    await client.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "Again", name: "rui" }] });
    expect(ctx.upstream.requests[2]?.body.messages).toEqual([
      ...messages,
      { role: "assistant", content: "Reply to: Hi" },
      { role: "user", content: "Again", name: "rui" },
    ]);
  });
});

describe("an abandoned stateless call", () => {
  it("is ended upstream when the SDK aborts its stream (no Idempotency-Key)", async () => {
    // 300 tokens 100 ms apart: far longer than the wait below, so only the abandon can end it early.
    ctx.upstream.setBehaviour({ kind: "ok", replyTokens: 300, tokenDelayMs: 100 });
    const abort = new AbortController();
    const stream = await openai().chat.completions.create(
      { model: "fake-model", messages: [{ role: "user", content: "Long story" }], stream: true },
      { signal: abort.signal },
    );
    let content = "";
    try {
      for await (const chunk of stream) {
        content += chunk.choices[0]?.delta.content ?? "";
        if (content.length > 0) abort.abort();
      }
    } catch (err) {
      expect(err).toBeInstanceOf(OpenAI.APIUserAbortError);
    }
    const request = await eventually(async () => ctx.upstream.requests[0]?.endedAt !== undefined && ctx.upstream.requests[0], {
      what: "the upstream call to end",
      timeoutMs: 15_000,
    });
    expect(request.closedEarly).toBe(true);
  });
});

describe("answers a retry cannot fix", () => {
  it("are not retried by the openai SDK (x-should-retry: false): a busy conversation's 409, a refused body's 400", async () => {
    let calls = 0;
    const { client: counting } = await boundOpenAI(ctx, {
      maxRetries: 2,
      fetch: (input, init) => {
        calls++;
        return fetch(input, init);
      },
    });
    ctx.upstream.setBehaviour({ kind: "ok", ttftMs: 3000 });
    const slow = counting.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "slow" }] });
    await eventually(async () => ctx.upstream.requests.length === 1, { what: "the first turn to reach the upstream", timeoutMs: 10_000 });

    calls = 0;
    await expect(counting.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "too soon" }] })).rejects.toBeInstanceOf(
      OpenAI.ConflictError,
    );
    expect(calls).toBe(1);

    calls = 0;
    await expect(
      counting.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "x" }], temperature: 7 }),
    ).rejects.toMatchObject({ status: 400, param: "temperature" });
    expect(calls).toBe(1);
    await slow;
  });
});
