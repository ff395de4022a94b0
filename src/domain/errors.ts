/**
 * What can go wrong in Parley's own terms. Each class carries a stable,
 * machine-readable code; http/errors.ts maps them to statuses in one place.
 */

export abstract class ParleyError extends Error {
  abstract readonly code: string;
  /** The request field the error is about, when there is one. */
  readonly param: string | null;

  constructor(message: string, param: string | null = null) {
    super(message);
    this.name = new.target.name;
    this.param = param;
  }
}

export class InvalidRequestError extends ParleyError {
  readonly code: string;
  constructor(message: string, param: string | null, code = "invalid_request") {
    super(message, param);
    this.code = code;
  }
}

export class NotFoundError extends ParleyError {
  readonly code = "not_found";
  constructor(resource: "conversation" | "message" | "response" | "item", id: string, param: string | null = null) {
    super(`No ${resource} found with id '${id}'.`, param);
  }
}

export class ModelNotFoundError extends ParleyError {
  readonly code = "model_not_found";
  constructor(model: string, served: string[], param = "model") {
    super(
      `The model '${model}' is not served here. Served: ${served.length ? served.join(", ") : "(none)"}.`,
      param,
    );
  }
}

export class ConversationBusyError extends ParleyError {
  readonly code = "conversation_busy";
  readonly replyId: string;
  constructor(replyId: string) {
    super(
      `The conversation has a reply in flight (${replyId}); wait for it to finish or cancel it before adding messages.`,
    );
    this.replyId = replyId;
  }
}

/**
 * A turn meant to follow a given message found the conversation had moved on (another turn came first).
 * Internal: the Responses API answers it by branching (src/domain/responses.ts); it never reaches a client.
 */
export class HistoryMovedOnError extends ParleyError {
  readonly code = "history_moved_on";
  constructor() {
    super("The conversation has had another turn since the message this one follows.");
  }
}

/** A dependency (Redis, Postgres) did not answer. */
export class DependencyUnavailableError extends ParleyError {
  readonly code = "service_unavailable";
  constructor(what: string) {
    super(`${what} is unavailable; try again shortly.`);
  }
}

/** An Idempotency-Key reused with another request, or still held by a request in progress. */
export class IdempotencyConflictError extends ParleyError {
  readonly code: string;
  constructor(
    message: string,
    code: "idempotency_key_reused" | "idempotency_key_in_use" | "idempotency_replay_unavailable",
  ) {
    super(message, "Idempotency-Key");
    this.code = code;
  }
}

/** No API key, a key that is not one of ours, or a revoked one; the message never says which. */
export class AuthenticationError extends ParleyError {
  readonly code: string;
  constructor(message: string, code: "missing_api_key" | "invalid_api_key" | "invalid_admin_secret" | "admin_api_disabled" | "invalid_metrics_token") {
    super(message);
    this.code = code;
  }
}

/** What a limit answered with: enough for `Retry-After` and the `x-ratelimit-*` headers. */
export interface LimitState {
  /** `requests` (per API key and window) or `replies` (per tenant, in flight at once). */
  kind: "requests" | "replies";
  limit: number;
  remaining: number;
  /** When a request (or a slot) is likely to be free again. */
  resetMs: number;
}

export class RateLimitedError extends ParleyError {
  readonly code: string;
  readonly state: LimitState;
  constructor(message: string, state: LimitState) {
    super(message);
    this.code = state.kind === "requests" ? "rate_limit_exceeded" : "concurrency_limit_exceeded";
    this.state = state;
  }
}

/** An admin asked for a key or tenant that does not exist. */
export class UnknownApiKeyError extends ParleyError {
  readonly code = "not_found";
  constructor(prefix: string) {
    super(`No API key with prefix '${prefix}'.`, "prefix");
  }
}

/**
 * An error and the causes it wraps, outermost first, at most `depth` deep: drivers' errors arrive wrapped
 * (drizzle's DrizzleQueryError keeps the driver's as its cause), so a code is looked for down the chain.
 */
export function* errorChain(err: unknown, depth = 5): Generator<unknown> {
  for (let e: unknown = err, seen = 0; e && seen < depth; e = (e as { cause?: unknown }).cause, seen++) yield e;
}
