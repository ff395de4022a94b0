import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { and, eq, lt, sql } from "drizzle-orm";
import stringify from "safe-stable-stringify";
import type { Database } from "../db/client.ts";
import { idempotencyKeys } from "../db/schema.ts";
import { IdempotencyConflictError } from "./errors.ts";

/**
 * Idempotency keys on creating requests: the first request with a key does
 * the work and records what it stored; a repeat with the same request is
 * answered from that record; the same key with another request is a 409.
 * Concurrent requests with one key: one does the work, the others wait for
 * its record. A request that fails gives its key back, so it can be retried.
 */

/** What a request stored: enough for a repeat to give the same answer. */
export type IdempotentResult =
  | { kind: "conversation"; conversationId: string; response: unknown }
  | { kind: "turn"; conversationId: string; messageIds: string[]; replyId: string | null }
  | { kind: "completion"; completionId: string; created: number };

export interface IdempotencyScope {
  db: Database;
  tenantId: string;
  key: string;
  /** Keys older than this are forgotten (and may be used again). */
  ttlMs: number;
}

/** The same request, whatever the order of its JSON keys. */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash("sha256").update(`${method} ${path}\n${stringify(body)}`).digest("hex");
}

const WAIT_STEP_MS = 50;
const WAIT_LIMIT_MS = 10_000;

/**
 * Claims the key for this request. Returns null when this request is to do
 * the work (and then `record` or `release`), or the recorded result of the
 * earlier request to answer from.
 */
export async function claimIdempotencyKey(scope: IdempotencyScope, fingerprint: string): Promise<IdempotentResult | null> {
  const { db, tenantId, key } = scope;
  const where = and(eq(idempotencyKeys.tenantId, tenantId), eq(idempotencyKeys.key, key));
  // Forget an expired use of the key, so it can be claimed afresh.
  await db.delete(idempotencyKeys).where(and(where, lt(idempotencyKeys.createdAt, new Date(Date.now() - scope.ttlMs))));
  for (let waited = 0; ; waited += WAIT_STEP_MS) {
    const inserted = await db
      .insert(idempotencyKeys)
      .values({ tenantId, key, fingerprint })
      .onConflictDoNothing()
      .returning({ key: idempotencyKeys.key });
    if (inserted.length > 0) return null;
    const [held] = await db.select().from(idempotencyKeys).where(where);
    if (!held) continue; // the holder failed and gave it back: claim it now
    if (held.fingerprint !== fingerprint) {
      throw new IdempotencyConflictError(
        "This Idempotency-Key was used with a different request; use a new key for a new request.",
        "idempotency_key_reused",
      );
    }
    if (held.result) return held.result as IdempotentResult;
    if (waited >= WAIT_LIMIT_MS) {
      throw new IdempotencyConflictError("A request with this Idempotency-Key is still in progress.", "idempotency_key_in_use");
    }
    await sleep(WAIT_STEP_MS);
  }
}

export async function recordIdempotentResult(scope: IdempotencyScope, result: IdempotentResult): Promise<void> {
  await scope.db
    .update(idempotencyKeys)
    .set({ result })
    .where(and(eq(idempotencyKeys.tenantId, scope.tenantId), eq(idempotencyKeys.key, scope.key)));
}

export async function releaseIdempotencyKey(scope: IdempotencyScope): Promise<void> {
  await scope.db
    .delete(idempotencyKeys)
    .where(
      and(eq(idempotencyKeys.tenantId, scope.tenantId), eq(idempotencyKeys.key, scope.key), sql`${idempotencyKeys.result} is null`),
    );
}

/** Deletes keys past their lifetime (the claim also ignores them; this keeps the table small). */
export async function forgetExpiredIdempotencyKeys(db: Database, ttlMs: number): Promise<void> {
  await db.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, new Date(Date.now() - ttlMs)));
}
