import { createHash } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { and, eq, isNull, lt, sql, type SQL } from "drizzle-orm";
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
 *
 * A claim with no record yet is held on a lease: the claiming request renews
 * it (its `created_at`) while it works, and a claim not renewed for
 * `leaseMs` is taken to be a crashed request's and is taken over, so a crash
 * cannot wedge a key. The claim's `created_at` is also its token: a request
 * whose claim was taken over can no longer record or release it.
 */

/** What a request stored: enough for a repeat to give the same answer. */
export type IdempotentResult =
  | { kind: "conversation"; conversationId: string; response: unknown }
  | { kind: "turn"; conversationId: string; messageIds: string[]; replyId: string | null }
  | { kind: "completion"; completionId: string; created: number }
  | { kind: "response"; responseId: string; completionId?: string; created?: number };

export interface IdempotencyScope {
  db: Database;
  tenantId: string;
  key: string;
  /** Keys older than this are forgotten (and may be used again). */
  ttlMs: number;
  /** A claim with no result that has not been renewed for this long has lapsed. */
  leaseMs: number;
  /** How long a repeat waits for a claim in progress before `idempotency_key_in_use`. */
  waitMs: number;
}

/** The same request, whatever the order of its JSON keys. */
export function requestFingerprint(method: string, path: string, body: unknown): string {
  return createHash("sha256").update(`${method} ${path}\n${stringify(body)}`).digest("hex");
}

const WAIT_STEP_MS = 50;

const ago = (ms: number): SQL => sql`now() - ${ms} * interval '1 millisecond'`;
/** `created_at` as Postgres prints it: exact to the microsecond, unlike a JS Date. */
const claimToken = sql<string>`${idempotencyKeys.createdAt}::text`;

/**
 * Claims the key for this request. Returns the claim when this request is to
 * do the work (and then `record` or `release` it), or the recorded result of
 * the earlier request to answer from.
 */
export async function claimIdempotencyKey(
  scope: IdempotencyScope,
  fingerprint: string,
): Promise<{ claim: IdempotencyClaim; result?: never } | { result: IdempotentResult; claim?: never }> {
  const { db, tenantId, key } = scope;
  const where = and(eq(idempotencyKeys.tenantId, tenantId), eq(idempotencyKeys.key, key));
  // Forget an expired use of the key, so it can be claimed afresh.
  await db.delete(idempotencyKeys).where(and(where, lt(idempotencyKeys.createdAt, ago(scope.ttlMs))));
  for (let waited = 0; ; ) {
    const [inserted] = await db
      .insert(idempotencyKeys)
      .values({ tenantId, key, fingerprint })
      .onConflictDoNothing()
      .returning({ token: claimToken });
    if (inserted) return { claim: new IdempotencyClaim(scope, inserted.token) };
    const [held] = await db
      .select({
        fingerprint: idempotencyKeys.fingerprint,
        result: idempotencyKeys.result,
        token: claimToken,
        lapsed: sql<boolean>`${idempotencyKeys.result} is null and ${idempotencyKeys.createdAt} < ${ago(scope.leaseMs)}`,
      })
      .from(idempotencyKeys)
      .where(where);
    if (!held) continue; // the holder failed and gave it back: claim it now
    if (held.lapsed) {
      // Its request stopped renewing it (crashed) and stored nothing: take it over, whatever it asked.
      await db.delete(idempotencyKeys).where(and(where, isNull(idempotencyKeys.result), sql`${idempotencyKeys.createdAt} = ${held.token}::timestamptz`));
      continue;
    }
    if (held.fingerprint !== fingerprint) {
      throw new IdempotencyConflictError(
        "This Idempotency-Key was used with a different request; use a new key for a new request.",
        "idempotency_key_reused",
      );
    }
    if (held.result) return { result: held.result as IdempotentResult };
    if (waited >= scope.waitMs) {
      throw new IdempotencyConflictError("A request with this Idempotency-Key is still in progress.", "idempotency_key_in_use");
    }
    await sleep(WAIT_STEP_MS);
    waited += WAIT_STEP_MS;
  }
}

/** A key this request holds, renewed every third of the lease until it is recorded or released. */
export class IdempotencyClaim {
  readonly #scope: IdempotencyScope;
  #token: string;
  #lost = false;
  #renewing: Promise<void> = Promise.resolve();
  readonly #timer: NodeJS.Timeout;

  constructor(scope: IdempotencyScope, token: string) {
    this.#scope = scope;
    this.#token = token;
    this.#timer = setInterval(() => {
      this.#renewing = this.#renewing.then(() => this.#renew());
    }, Math.max(100, Math.floor(scope.leaseMs / 3)));
    this.#timer.unref();
  }

  #mine(): SQL | undefined {
    return and(
      eq(idempotencyKeys.tenantId, this.#scope.tenantId),
      eq(idempotencyKeys.key, this.#scope.key),
      isNull(idempotencyKeys.result),
      sql`${idempotencyKeys.createdAt} = ${this.#token}::timestamptz`,
    );
  }

  async #renew(): Promise<void> {
    if (this.#lost) return;
    try {
      const [renewed] = await this.#scope.db
        .update(idempotencyKeys)
        .set({ createdAt: sql`now()` })
        .where(this.#mine())
        .returning({ token: claimToken });
      if (renewed) this.#token = renewed.token;
      else this.#lost = true;
    } catch {
      // Postgres away for a moment: the next renewal tries again, well within the lease.
    }
  }

  async #stopRenewing(): Promise<void> {
    clearInterval(this.#timer);
    await this.#renewing;
  }

  /** Records what the request stored; false when the claim had lapsed and was taken over meanwhile. */
  async record(result: IdempotentResult): Promise<boolean> {
    await this.#stopRenewing();
    if (this.#lost) return false;
    const recorded = await this.#scope.db
      .update(idempotencyKeys)
      .set({ result })
      .where(this.#mine())
      .returning({ key: idempotencyKeys.key });
    return recorded.length > 0;
  }

  /** Gives the key back (the request stored nothing), unless another request has taken it over. */
  async release(): Promise<void> {
    await this.#stopRenewing();
    if (this.#lost) return;
    await this.#scope.db.delete(idempotencyKeys).where(this.#mine());
  }
}

/** Deletes keys past their lifetime (the claim also ignores them; this keeps the table small). */
export async function forgetExpiredIdempotencyKeys(db: Database, ttlMs: number): Promise<void> {
  await db.delete(idempotencyKeys).where(lt(idempotencyKeys.createdAt, new Date(Date.now() - ttlMs)));
}
