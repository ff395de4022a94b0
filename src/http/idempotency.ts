import type { Context } from "hono";
import type { Database } from "../db/client.ts";
import { InvalidRequestError } from "../domain/errors.ts";
import { claimIdempotencyKey, requestFingerprint, type IdempotentResult } from "../domain/idempotency.ts";
import type { AppEnv } from "./env.ts";

export interface IdempotencyDeps {
  db: Database;
  idempotencyTtlMs: number;
  /** IDEMPOTENCY_CLAIM_LEASE_MS: how long a claim whose request stopped renewing it is honoured. */
  idempotencyClaimLeaseMs: number;
  /** REQUEST_TIMEOUT_MS: a repeat waits for a claim in progress for half of it, and then answers 409. */
  requestTimeoutMs: number;
}

const KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

/**
 * Runs a creating request under its `Idempotency-Key`, when it has one: the
 * first request performs and records what it stored, before answering; a
 * repeat (same key, same request) is answered by `replay` from that record.
 *
 * `perform` is the work the request deadline bounds; once it is stored (and
 * recorded), the deadline is lifted, since answering may mean waiting for the
 * model (a `wait: true` append, a non-streamed completion).
 */
export async function idempotently<T>(
  c: Context<AppEnv>,
  deps: IdempotencyDeps,
  body: unknown,
  steps: {
    perform: () => Promise<{ result: IdempotentResult; value: T }>;
    respond: (value: T) => Response | Promise<Response>;
    replay: (result: IdempotentResult) => Response | Promise<Response>;
  },
): Promise<Response> {
  const liftDeadline = () => c.var.liftDeadline?.();
  const key = c.req.header("idempotency-key");
  if (key === undefined) {
    const done = await steps.perform();
    liftDeadline();
    return steps.respond(done.value);
  }
  if (!KEY_SHAPE.test(key)) {
    throw new InvalidRequestError("Idempotency-Key must be 1 to 255 printable ASCII characters.", "Idempotency-Key");
  }
  const scope = {
    db: deps.db,
    tenantId: c.var.tenantId,
    key,
    ttlMs: deps.idempotencyTtlMs,
    leaseMs: deps.idempotencyClaimLeaseMs,
    waitMs: Math.floor(deps.requestTimeoutMs / 2),
  };
  const claimed = await claimIdempotencyKey(scope, requestFingerprint(c.req.method, c.req.path, body));
  if (claimed.result) {
    c.header("idempotent-replayed", "true");
    liftDeadline();
    return steps.replay(claimed.result);
  }
  let done: { result: IdempotentResult; value: T };
  try {
    done = await steps.perform();
  } catch (err) {
    await claimed.claim.release().catch(() => {});
    throw err;
  }
  if (!(await claimed.claim.record(done.result))) {
    // This request outlived its claim's lease (stalled, or Postgres away) and a repeat took the key over.
    c.var.log.warn("idempotency claim lapsed before its result was recorded");
  }
  liftDeadline();
  return steps.respond(done.value);
}
