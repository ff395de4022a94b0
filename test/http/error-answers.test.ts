import { Hono } from "hono";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  AuthenticationError,
  ConversationBusyError,
  DependencyUnavailableError,
  IdempotencyConflictError,
  InvalidRequestError,
  ModelNotFoundError,
  NotFoundError,
  RateLimitedError,
} from "../../src/domain/errors.ts";
import { ApiError, ReplyFailedError, sendError, validationError } from "../../src/http/errors.ts";
import { ProviderError } from "../../src/providers/types.ts";

const log = pino({ level: "silent" });

/** What sendError answers for `err`: status, the headers that matter to a retrying client, and the body. */
async function answerTo(err: unknown) {
  const app = new Hono();
  app.get("/", (c) => sendError(c, err, log));
  const res = await app.request("/");
  return {
    status: res.status,
    shouldRetry: res.headers.get("x-should-retry"),
    retryAfter: res.headers.get("retry-after"),
    body: (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } },
  };
}

const badField = z.object({ n: z.number() }).safeParse({ n: "x" }).error!;

describe("error answers a retry cannot fix say so (x-should-retry: false)", () => {
  it.each([
    ["a validation 400", validationError(badField, "json"), 400],
    ["an invalid request", new InvalidRequestError("bad", "messages"), 400],
    ["a missing key", new AuthenticationError("no key", "missing_api_key"), 401],
    ["an unknown conversation", new NotFoundError("conversation", "conv_x"), 404],
    ["an unserved model", new ModelNotFoundError("nope", ["fake-model"]), 404],
    ["a busy conversation", new ConversationBusyError("msg_x"), 409],
    ["an Idempotency-Key reused", new IdempotencyConflictError("reused", "idempotency_key_reused"), 409],
    ["an Idempotency-Key in use", new IdempotencyConflictError("in use", "idempotency_key_in_use"), 409],
    ["a body too large", new ApiError(413, "too large", "request_too_large"), 413],
    ["an unknown route", new ApiError(404, "no route", "route_not_found"), 404],
  ])("%s", async (_, err, status) => {
    const answer = await answerTo(err);
    expect(answer.status).toBe(status);
    expect(answer.shouldRetry).toBe("false");
  });

  it("keeps Retry-After and no x-should-retry on a 429 and a 503", async () => {
    const limited = await answerTo(
      new RateLimitedError("slow down", { kind: "requests", limit: 10, remaining: 0, resetMs: 3_000 }),
    );
    expect(limited).toMatchObject({ status: 429, shouldRetry: null, retryAfter: "3" });
    const unavailable = await answerTo(new DependencyUnavailableError("Redis"));
    expect(unavailable).toMatchObject({ status: 503, shouldRetry: null, retryAfter: "2" });
  });
});

describe("a failure before the first token, as a chat completion answers it", () => {
  it("answers an upstream refusal with the upstream's status, type, code and param, not to be retried", async () => {
    const failure = {
      message: "upstream together answered 400: too long",
      type: "invalid_request_error",
      code: "context_length_exceeded",
      param: "messages",
      status: 400,
    };
    const answer = await answerTo(new ReplyFailedError(failure));
    expect(answer.status).toBe(400);
    expect(answer.shouldRetry).toBe("false");
    expect(answer.body.error).toEqual({
      message: "upstream together answered 400: too long",
      type: "invalid_request_error",
      code: "context_length_exceeded",
      param: "messages",
    });
  });

  it.each([
    ["upstream_error", 502],
    ["upstream_timeout", 504],
    ["model_not_found", 404],
    ["interrupted", 503],
  ])("maps a stored %s without a status as before (%i)", async (code, status) => {
    const answer = await answerTo(new ReplyFailedError({ message: "m", type: "upstream_error", code }));
    expect(answer.status).toBe(status);
    expect(answer.body.error).toMatchObject({ code, param: null });
    expect(answer.shouldRetry).toBe(status === 404 ? "false" : null);
  });

  it("does not take a stored status that is no refusal (5xx, 408, 429) as the answer's", async () => {
    for (const status of [500, 408, 429]) {
      const answer = await answerTo(new ReplyFailedError({ message: "m", type: "upstream_error", code: "upstream_error", status }));
      expect(answer.status).toBe(502);
      expect(answer.shouldRetry).toBeNull();
    }
  });

  it("answers a ProviderError that reached HTTP the same way", async () => {
    const refused = new ProviderError("upstream fake answered 422: no", {
      code: "upstream_error",
      upstreamStatus: 422,
      upstreamDetail: { type: "invalid_request_error", code: "bad_schema", param: "response_format" },
    });
    expect(refused).toMatchObject({ refused: true, status: 422 });
    const answer = await answerTo(refused);
    expect(answer).toMatchObject({ status: 422, shouldRetry: "false" });
    expect(answer.body.error).toMatchObject({ type: "invalid_request_error", code: "bad_schema", param: "response_format" });

    const busy = new ProviderError("upstream fake answered 429", { code: "upstream_error", upstreamStatus: 429 });
    expect(busy).toMatchObject({ refused: false, status: 502 });
    expect(await answerTo(busy)).toMatchObject({ status: 502, shouldRetry: null });
  });
});

describe("a dependency that is away", () => {
  it("answers 503 service_unavailable, not 500, when ioredis gives up on a command after its retries (Redis restarting)", async () => {
    const { MaxRetriesPerRequestError } = await import("ioredis/built/errors/index.js");
    const { toErrorResponse } = await import("../../src/http/errors.ts");
    const { pino } = await import("pino");
    const answer = toErrorResponse(new MaxRetriesPerRequestError(2), pino({ level: "silent" }));
    expect(answer.status).toBe(503);
    expect(answer.body.error.code).toBe("service_unavailable");
  });
});
