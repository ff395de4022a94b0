import type { Context } from "hono";
import type { Database } from "../db/client.ts";
import { InvalidRequestError } from "../domain/errors.ts";
import {
  claimIdempotencyKey,
  recordIdempotentResult,
  releaseIdempotencyKey,
  requestFingerprint,
  type IdempotentResult,
} from "../domain/idempotency.ts";
import type { AppEnv } from "./env.ts";

export interface IdempotencyDeps {
  db: Database;
  idempotencyTtlMs: number;
}

const KEY_SHAPE = /^[\x21-\x7e]{1,255}$/;

/**
 * Runs a creating request under its `Idempotency-Key`, when it has one: the
 * first request performs and records what it stored, before answering; a
 * repeat (same key, same request) is answered by `replay` from that record.
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
  const key = c.req.header("idempotency-key");
  if (key === undefined) return steps.respond((await steps.perform()).value);
  if (!KEY_SHAPE.test(key)) {
    throw new InvalidRequestError("Idempotency-Key must be 1 to 255 printable ASCII characters.", "Idempotency-Key");
  }
  const scope = { db: deps.db, tenantId: c.var.tenantId, key, ttlMs: deps.idempotencyTtlMs };
  const earlier = await claimIdempotencyKey(scope, requestFingerprint(c.req.method, c.req.path, body));
  if (earlier) {
    c.header("idempotent-replayed", "true");
    return steps.replay(earlier);
  }
  let done: { result: IdempotentResult; value: T };
  try {
    done = await steps.perform();
  } catch (err) {
    await releaseIdempotencyKey(scope).catch(() => {});
    throw err;
  }
  await recordIdempotentResult(scope, done.result);
  return steps.respond(done.value);
}
