import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { Logger } from "pino";
import type { ZodError } from "zod";
import {
  AuthenticationError,
  ConversationBusyError,
  DependencyUnavailableError,
  errorChain,
  IdempotencyConflictError,
  InvalidRequestError,
  ModelNotFoundError,
  NotFoundError,
  ParleyError,
  RateLimitedError,
  UnknownApiKeyError,
} from "../domain/errors.ts";
import { rateLimitHeaders } from "./auth.ts";
import { isRefusalStatus, ProviderError } from "../providers/types.ts";

/** The one error shape every endpoint answers with, as the chat-completions SDKs expect it. */
export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

export function errorBody(message: string, type: string, param: string | null, code: string | null): ErrorBody {
  return { error: { message, type, param, code } };
}

/** An error raised by the HTTP layer itself (bad JSON, unknown route). */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode;
  readonly body: ErrorBody;
  constructor(status: ContentfulStatusCode, message: string, code: string, param: string | null = null) {
    super(message);
    this.status = status;
    this.body = errorBody(message, status >= 500 ? "server_error" : "invalid_request_error", param, code);
  }
}

/** How a failed reply or completion was stored (its `error`); `status` and `param` when the upstream refused it. */
export interface ReplyFailure {
  message: string;
  type: string;
  code: string;
  status?: number;
  param?: string | null;
}

/** A reply or completion that ended failed before its first token, answered as an HTTP error (chat completions). */
export class ReplyFailedError extends Error {
  readonly failure: ReplyFailure;
  constructor(failure: ReplyFailure) {
    super(failure.message);
    this.name = "ReplyFailedError";
    this.failure = failure;
  }
}

/** The upstream's own status when it refused the request; else what the failure's code means. */
function failureStatus(failure: ReplyFailure): ContentfulStatusCode {
  if (Number.isInteger(failure.status) && isRefusalStatus(failure.status ?? null)) return failure.status as ContentfulStatusCode;
  if (failure.code === "upstream_timeout") return 504;
  if (failure.code === "model_not_found") return 404;
  if (failure.code === "interrupted" || failure.code === "queue_unavailable") return 503;
  return 502;
}

/** Domain error class → HTTP status and `type`, in one place. */
function fromDomain(err: ParleyError): { status: ContentfulStatusCode; type: string } {
  if (err instanceof InvalidRequestError) return { status: 400, type: "invalid_request_error" };
  if (err instanceof NotFoundError || err instanceof ModelNotFoundError || err instanceof UnknownApiKeyError) {
    return { status: 404, type: "invalid_request_error" };
  }
  if (err instanceof AuthenticationError) return { status: 401, type: "authentication_error" };
  if (err instanceof RateLimitedError) return { status: 429, type: "rate_limit_error" };
  if (err instanceof ConversationBusyError || err instanceof IdempotencyConflictError) {
    return { status: 409, type: "invalid_request_error" };
  }
  if (err instanceof DependencyUnavailableError) return { status: 503, type: "server_error" };
  return { status: 500, type: "server_error" };
}

// postgres.js and ioredis report a server they cannot reach with these; Postgres itself ends what ran
// past its timeouts with 57014 (statement_timeout) and 25P03 (idle_in_transaction_session_timeout).
const UNREACHABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "57014",
  "25P03",
]);
function isDependencyDown(err: unknown): boolean {
  for (const e of errorChain(err)) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && UNREACHABLE.has(code)) return true;
    const message = e instanceof Error ? e.message : "";
    // "Command timed out": ioredis' commandTimeout, Redis unreachable behind an open connection.
    if (/Connection is closed|Stream isn't writeable|enableOfflineQueue|ECONNREFUSED|Command timed out/.test(message)) return true;
    // ioredis gave up on a command after maxRetriesPerRequest reconnections (Redis restarting or away).
    if (e instanceof Error && e.name === "MaxRetriesPerRequestError") return true;
  }
  return false;
}

export function toErrorResponse(err: unknown, log: Logger): { status: ContentfulStatusCode; body: ErrorBody } {
  if (err instanceof ApiError) return { status: err.status, body: err.body };
  if (err instanceof ParleyError) {
    const { status, type } = fromDomain(err);
    return { status, body: errorBody(err.message, type, err.param, err.code) };
  }
  if (err instanceof ReplyFailedError) {
    const f = err.failure;
    return { status: failureStatus(f), body: errorBody(f.message, f.type, f.param ?? null, f.code) };
  }
  if (err instanceof ProviderError) {
    const said = err.refused ? err.upstreamDetail : null;
    return {
      status: err.status as ContentfulStatusCode,
      body: errorBody(err.message, said?.type ?? "upstream_error", said?.param ?? null, said?.code ?? err.code),
    };
  }
  if (err instanceof HTTPException) return fromHttpException(err);
  if (isUnstorableText(err)) {
    return {
      status: 400,
      body: errorBody("The request has text that cannot be stored (a NUL character?).", "invalid_request_error", null, "invalid_text"),
    };
  }
  if (isDependencyDown(err)) {
    log.error({ err }, "a dependency is unavailable");
    return { status: 503, body: errorBody("A dependency of the service is unavailable; try again shortly.", "server_error", null, "service_unavailable") };
  }
  log.error({ err }, "unhandled error");
  return { status: 500, body: errorBody("Internal error.", "server_error", null, "internal_error") };
}

/** Hono's validators throw these: a body that is not JSON, or not sent as JSON. */
function fromHttpException(err: HTTPException): { status: ContentfulStatusCode; body: ErrorBody } {
  const status = err.status as ContentfulStatusCode;
  if (status === 415) {
    return {
      status,
      body: errorBody("Send the body as JSON, with `Content-Type: application/json`.", "invalid_request_error", null, "unsupported_media_type"),
    };
  }
  if (status === 400 && /json/i.test(err.message)) {
    return { status, body: errorBody("The request body is not valid JSON.", "invalid_request_error", null, "invalid_json") };
  }
  return { status, body: errorBody(err.message, status >= 500 ? "server_error" : "invalid_request_error", null, "invalid_request") };
}

/** Postgres refused a string (22021 character_not_in_repertoire, 22P05 untranslatable_character). */
function isUnstorableText(err: unknown): boolean {
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  const code = cause?.code ?? (err as { code?: unknown } | null)?.code;
  return code === "22021" || code === "22P05";
}

/** A failed zod parse as the 400 to throw (see validationErrorBody). */
export function validationError(error: ZodError, target: string): ApiError {
  const { message, code, param } = validationErrorBody(error, target).error;
  return new ApiError(400, message, code ?? "invalid_request", param);
}

/** A failed zod parse → 400 naming the first bad field (`messages.2.role`). */
export function validationErrorBody(error: ZodError, target: string): ErrorBody {
  const issue = error.issues[0] && innermostIssue(error.issues[0]);
  const path = issue?.path.map(String).join(".") ?? "";
  const param = path || (target === "json" ? null : target);
  const message = issue
    ? `${path ? `${path}: ` : ""}${describeIssue(issue.message, issue.code)}`
    : "Invalid request.";
  return errorBody(message, "invalid_request_error", param, "invalid_request");
}

type Issue = ZodError["issues"][number];

/**
 * A union that failed (`content`: a string, parts or null) names the field inside the one option whose type
 * matched (`content.0.type`), instead of the union as a whole.
 */
function innermostIssue(issue: Issue): Issue {
  if (issue.code !== "invalid_union" || issue.errors.length === 0) return issue;
  const matched = issue.errors.filter((branch) => !(branch.length === 1 && branch[0]?.code === "invalid_type" && branch[0].path.length === 0));
  const inner = matched.length === 1 ? matched[0]?.[0] : undefined;
  return inner ? innermostIssue({ ...inner, path: [...issue.path, ...inner.path] }) : issue;
}

function describeIssue(message: string, code: string): string {
  if (code === "unrecognized_keys") return message.replace(/^Unrecognized key/, "Unknown field");
  return message;
}

/** Headers an error answer carries besides its body: how long to wait, or how to authenticate. */
function errorHeaders(err: unknown): Record<string, string> {
  if (err instanceof RateLimitedError) {
    return {
      ...rateLimitHeaders(err.state),
      "retry-after": String(Math.max(1, Math.ceil(err.state.resetMs / 1000))),
      // The OpenAI SDK waits this long before its own retry.
      "retry-after-ms": String(Math.max(1, Math.round(err.state.resetMs))),
    };
  }
  if (err instanceof AuthenticationError) return { "www-authenticate": 'Bearer realm="parley"' };
  return {};
}

/** A 503 says when to try again: the dependencies it waits on usually come back within seconds. */
const RETRY_AFTER_UNAVAILABLE_SECONDS = 2;

/**
 * Every error answer goes out here. One that the same request cannot get past by being sent again (a 4xx
 * other than 408 and 429: Parley's own, 409 busy included, or the upstream's refusal) says so with
 * `x-should-retry: false`, which the OpenAI and Together SDKs obey; without it they retry 409s, and
 * each retry of a bound chat completion would store the user's turn again.
 */
export function sendError(c: Context, err: unknown, log: Logger): Response {
  const { status, body } = toErrorResponse(err, log);
  const headers = errorHeaders(err);
  if (status === 503) headers["retry-after"] ??= String(RETRY_AFTER_UNAVAILABLE_SECONDS);
  if (isRefusalStatus(status)) headers["x-should-retry"] = "false";
  return c.json(body, status, headers);
}
