import OpenAI from "openai";
import Together from "together-ai";
import { describe, expect, it } from "vitest";
import { upstreamError } from "../support/fake-upstream.ts";
import { postForEvents } from "../support/http.ts";
import { TEST_API_KEY } from "../support/keys.ts";
import { useServiceWithFakeUpstream } from "../support/service.ts";

/**
 * An upstream's refusal (a 4xx other than 408/429) reaches clients as the
 * upstream said it, and every answer a retry cannot fix carries
 * `x-should-retry: false`: the SDKs, at their default retries, raise at once.
 */

const ctx = useServiceWithFakeUpstream({
  apiKey: "sk-upstream",
  overrides: {
    // Parley's own retries of what is worth retrying stay quick.
    UPSTREAM_RETRY_BASE_MS: 5,
    UPSTREAM_MAX_RETRIES: 2,
  },
});

/** Every response Parley gave an SDK client: how many requests it made, and what came back. */
function countingFetch() {
  const responses: Response[] = [];
  const fetchCounted: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    responses.push(res);
    return res;
  };
  return { fetch: fetchCounted, responses };
}

// The SDKs' own defaults (maxRetries 2), as apps run them.
const openaiAt = (baseURL: string, f: typeof fetch) => new OpenAI({ baseURL, apiKey: TEST_API_KEY, fetch: f });
const togetherAt = (baseURL: string, f: typeof fetch) => new Together({ baseURL, apiKey: TEST_API_KEY, fetch: f });

const contextTooLong = upstreamError(400, {
  message: "This model's maximum context length is 8192 tokens; your messages resulted in 9000 tokens.",
  type: "invalid_request_error",
  param: "messages",
  code: "context_length_exceeded",
});

/** What a client sees of the refusal above, whatever the API. */
const asTheUpstreamSaid = {
  status: 400,
  type: "invalid_request_error",
  code: "context_length_exceeded",
  param: "messages",
};

describe("an upstream 400 on the stateless endpoint", () => {
  it.each([false, true])("the OpenAI SDK raises BadRequestError at once (stream: %s), after one upstream call", async (stream) => {
    ctx.upstream.setBehaviour(contextTooLong);
    const counted = countingFetch();
    const openai = openaiAt(`${ctx.service.url}/v1`, counted.fetch);
    const call = openai.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "a long one" }], stream });
    const err = await call.then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err).toMatchObject(asTheUpstreamSaid);
    expect((err as Error).message).toContain("upstream fake answered 400: This model's maximum context length is 8192 tokens");
    expect(counted.responses).toHaveLength(1);
    expect(counted.responses[0]?.headers.get("x-should-retry")).toBe("false");
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it.each([false, true])("the Together SDK raises BadRequestError at once (stream: %s), after one upstream call", async (stream) => {
    ctx.upstream.setBehaviour(contextTooLong);
    const counted = countingFetch();
    const together = togetherAt(`${ctx.service.url}/v1`, counted.fetch);
    const err = await together.chat.completions
      .create({ model: "fake-model", messages: [{ role: "user", content: "a long one" }], stream })
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(Together.BadRequestError);
    // Together's errors keep the whole body (`error.error`) rather than lifting its fields.
    const { status, ...fields } = asTheUpstreamSaid;
    expect(err).toMatchObject({ status, error: { error: fields } });
    expect(counted.responses).toHaveLength(1);
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("masks a key in what the upstream said, in the message and in its fields", async () => {
    ctx.upstream.setBehaviour(
      upstreamError(401, {
        message: "Incorrect API key provided: sk-upstream",
        type: "invalid_request_error",
        code: "invalid_api_key",
        param: "key sk-upstream",
      }),
    );
    const res = await ctx.api.post("/chat/completions", { model: "fake-model", messages: [{ role: "user", content: "hi" }] });
    expect(res.status).toBe(401);
    expect(res.headers.get("x-should-retry")).toBe("false");
    expect(res.body.error).toMatchObject({ type: "invalid_request_error", code: "invalid_api_key", param: "key [masked]" });
    expect(res.body.error.message).toBe("upstream fake answered 401: Incorrect API key provided: [masked]");
    expect(JSON.stringify(res.body)).not.toContain("sk-upstream");
  });

  it("retries an upstream 429 and 5xx inside Parley and ends with a 502 the SDKs may retry", async () => {
    ctx.upstream.setBehaviour(upstreamError(503, { message: "overloaded", type: "server_error" }));
    const res = await ctx.api.post("/chat/completions", { model: "fake-model", messages: [{ role: "user", content: "hi" }] });
    expect(res.status).toBe(502);
    expect(res.headers.get("x-should-retry")).toBeNull();
    expect(res.body.error).toMatchObject({ type: "upstream_error", code: "upstream_error" });
    expect(ctx.upstream.requests).toHaveLength(1 + ctx.service.config.UPSTREAM_MAX_RETRIES);
  });
});

describe("an upstream 400 on the conversation-bound endpoint", () => {
  it("raises BadRequestError at once and stores the user's turn once", async () => {
    const conv = await ctx.api.post("/conversations", { model: "fake-model" });
    ctx.upstream.setBehaviour(contextTooLong);
    for (const stream of [false, true]) {
      const counted = countingFetch();
      const openai = openaiAt(`${ctx.service.url}/v1/conversations/${conv.body.id}`, counted.fetch);
      const content = `too long, stream: ${stream}`;
      const err = await openai.chat.completions
        .create({ model: "fake-model", messages: [{ role: "user", content }], stream })
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(OpenAI.BadRequestError);
      expect(err).toMatchObject(asTheUpstreamSaid);
      expect(counted.responses).toHaveLength(1);
      const stored = await ctx.api.get(`/conversations/${conv.body.id}/messages?limit=100`);
      expect(stored.body.data.filter((m: { role: string; content: string }) => m.role === "user" && m.content === content)).toHaveLength(1);
    }
    expect(ctx.upstream.requests).toHaveLength(2);
  });

  it("answers a busy conversation with a 409 the SDK raises as ConflictError at once", async () => {
    const conv = await ctx.api.post("/conversations", { model: "fake-model" });
    ctx.upstream.queueBehaviour({ kind: "hang" });
    const inFlight = await ctx.api.post(`/conversations/${conv.body.id}/messages`, { content: "first", wait: false });
    expect(inFlight.status).toBe(202);
    try {
      const counted = countingFetch();
      const openai = openaiAt(`${ctx.service.url}/v1/conversations/${conv.body.id}`, counted.fetch);
      const err = await openai.chat.completions.create({ model: "fake-model", messages: [{ role: "user", content: "second" }] }).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(OpenAI.ConflictError);
      expect(err).toMatchObject({ status: 409, code: "conversation_busy" });
      expect(counted.responses).toHaveLength(1);
      expect(counted.responses[0]?.headers.get("x-should-retry")).toBe("false");
    } finally {
      await ctx.api.post(`/conversations/${conv.body.id}/messages/${inFlight.body.reply.id}/cancel`);
    }
  });
});

describe("an upstream 400 on a native append", () => {
  it("a waiting append answers 201 with the failed reply, its error carrying the upstream's status and param", async () => {
    const conv = await ctx.api.post("/conversations", { model: "fake-model" });
    ctx.upstream.setBehaviour(contextTooLong);
    const res = await ctx.api.post(`/conversations/${conv.body.id}/messages`, { content: "too long" });
    expect(res.status).toBe(201);
    expect(res.body.reply.status).toBe("failed");
    expect(res.body.reply.error).toEqual({
      message: "upstream fake answered 400: This model's maximum context length is 8192 tokens; your messages resulted in 9000 tokens.",
      type: "invalid_request_error",
      code: "context_length_exceeded",
      param: "messages",
      status: 400,
    });
    const stored = await ctx.api.get(`/conversations/${conv.body.id}/messages/${res.body.reply.id}`);
    expect(stored.body.error).toEqual(res.body.reply.error);
    expect(ctx.upstream.requests).toHaveLength(1);
  });

  it("a streamed append ends with message.failed carrying the same error", async () => {
    const conv = await ctx.api.post("/conversations", { model: "fake-model" });
    ctx.upstream.setBehaviour(contextTooLong);
    const { status, events } = await postForEvents(`${ctx.service.url}/v1/conversations/${conv.body.id}/messages`, {
      content: "too long",
      stream: true,
    });
    expect(status).toBe(200);
    const failed = events.find((e) => e.event === "message.failed");
    expect(JSON.parse(failed?.data ?? "{}").error).toMatchObject({ ...asTheUpstreamSaid });
    expect(ctx.upstream.requests).toHaveLength(1);
  });
});
