import { APIError } from "openai";
import { beforeEach, describe, expect, it } from "vitest";
import { openaiAt } from "../support/openai-clients.ts";
import { ResponseResource, specIssues } from "../support/open-responses.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/*
 * `truncation` on a previous_response_id chain, with the openai client: OpenAI's default (`disabled`)
 * refuses a history that outgrows the model's window; `auto` drops the oldest turns to fit.
 */

/** Text of exactly `n` tokens in o200k_base, as a message of n + 4. */
const wordsOf = (n: number) => "hello ".repeat(n).trim();
const messageOf = (tokens: number) => wordsOf(tokens - 4);

// A 300-token window with 50 kept for the reply: 250 for the messages.
const ctx = useServiceWithFakeUpstream({
  models: ["fake-small"],
  overrides: { MODEL_CONTEXT_WINDOWS: [{ models: ["fake-small"], context_tokens: 300, reply_reserve_tokens: 50, token_ratio: 1 }] },
});
const openai = () => openaiAt(`${ctx.service.url}/v1`);
const sentContents = () => (ctx.upstream.requests.at(-1)?.body.messages as { content: string }[]).map((m) => m.content);

// Short replies, so the inputs decide what fits.
beforeEach(() => ctx.upstream.setBehaviour({ kind: "ok", text: "ok" }));

async function chainOfTwo(truncation?: "auto" | "disabled") {
  const one = await openai().responses.create({ model: "fake-small", input: messageOf(100), ...(truncation ? { truncation } : {}) });
  const two = await openai().responses.create({ model: "fake-small", input: messageOf(100), previous_response_id: one.id, ...(truncation ? { truncation } : {}) });
  expect(sentContents()).toHaveLength(3);
  return two;
}

describe("truncation on a chain", () => {
  it("disabled (the default): a history past the window is refused with a 400, and the chain can go on from where it was", async () => {
    const two = await chainOfTwo();
    const err = await openai()
      .responses.create({ model: "fake-small", input: messageOf(100), previous_response_id: two.id })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect(err).toMatchObject({ status: 400, code: "context_length_exceeded" });
    const requestsAfterRefusal = ctx.upstream.requests.length;
    expect(requestsAfterRefusal).toBe(2);
    const next = await openai().responses.create({ model: "fake-small", input: "short", previous_response_id: two.id });
    expect(specIssues(ResponseResource, next)).toEqual([]);
    expect(next.status).toBe("completed");
    expect(ctx.upstream.requests).toHaveLength(requestsAfterRefusal + 1);
    expect(sentContents()).toEqual([messageOf(100), "ok", messageOf(100), "ok", "short"]);
  });

  it("auto: the oldest turns are dropped to fit", async () => {
    const two = await chainOfTwo("auto");
    const three = await openai().responses.create({ model: "fake-small", input: messageOf(100), previous_response_id: two.id, truncation: "auto" });
    expect(three.status).toBe("completed");
    expect(three.truncation).toBe("auto");
    expect(sentContents()).toEqual(["ok", messageOf(100), "ok", messageOf(100)]);
  });

  it("is the request's own: a chain begun with auto refuses a later response that leaves it out (disabled, as it echoes)", async () => {
    const two = await chainOfTwo("auto");
    const err = await openai()
      .responses.create({ model: "fake-small", input: messageOf(100), previous_response_id: two.id })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 400, code: "context_length_exceeded" });
    expect(ctx.upstream.requests).toHaveLength(2);
  });

  it("is the request's own: a chain begun with disabled truncates a later response that asks for auto", async () => {
    const two = await chainOfTwo("disabled");
    const three = await openai().responses.create({ model: "fake-small", input: messageOf(100), previous_response_id: two.id, truncation: "auto" });
    expect(three.status).toBe("completed");
    expect(sentContents()).toEqual(["ok", messageOf(100), "ok", messageOf(100)]);
  });
});


describe("truncation beyond chains", () => {
  it("store: false continuing a chain fits the history in what its own input leaves (disabled refuses, auto drops)", async () => {
    const two = await chainOfTwo();
    // 2 × 100 + replies stored; 40 more would not fit with them.
    const refused = await openai()
      .responses.create({ model: "fake-small", input: messageOf(60), previous_response_id: two.id, store: false })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({ status: 400, code: "context_length_exceeded" });
    expect(ctx.upstream.requests).toHaveLength(2);
    const fitted = await openai().responses.create({ model: "fake-small", input: messageOf(60), previous_response_id: two.id, store: false, truncation: "auto" });
    expect(fitted.status).toBe("completed");
    expect(sentContents()).toEqual(["ok", messageOf(100), "ok", messageOf(60)]);
  });

  it("a response on a conversation echoes the truncation its turn was fitted by: the conversation's strategy unless the request names one", async () => {
    const auto = await openai().conversations.create({});
    await ctx.api.patch(`/conversations/${auto.id}`, { context_strategy: "auto" });
    const onAuto = await openai().responses.create({ model: "fake-small", input: "hi", conversation: auto.id });
    expect(onAuto.truncation).toBe("auto");
    const strict = await ctx.api.post("/conversations", { model: "fake-small", context_strategy: "strict" });
    const onStrict = await openai().responses.create({ model: "fake-small", input: "hi", conversation: (strict.body as { id: string }).id });
    expect(onStrict.truncation).toBe("disabled");
    const asked = await openai().responses.create({ model: "fake-small", input: "again", conversation: auto.id, truncation: "disabled" });
    expect(asked.truncation).toBe("disabled");
    expect((await openai().responses.retrieve(asked.id)).truncation).toBe("disabled");
  });
});
