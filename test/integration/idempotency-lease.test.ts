import { drizzle } from "drizzle-orm/postgres-js";
import { describe, expect, it } from "vitest";
import * as schema from "../../src/db/schema.ts";
import { claimIdempotencyKey, requestFingerprint } from "../../src/domain/idempotency.ts";
import { TEST_TENANT } from "../support/keys.ts";
import { useTestService } from "../support/service.ts";

/** A claim left by a request that died (an API killed mid-request) must not wedge its key. */
const LEASE_MS = 2000;
const ctx = useTestService({ IDEMPOTENCY_CLAIM_LEASE_MS: LEASE_MS, REQUEST_TIMEOUT_MS: 20_000 });

const body = (title: string) => ({ title });
/** What a request that claimed the key and then crashed leaves behind: a claim with no result. */
async function leaveCrashedClaim(key: string, title: string, age: string) {
  const fingerprint = requestFingerprint("POST", "/v1/conversations", body(title));
  await ctx.service.sql`
    insert into idempotency_keys (tenant_id, key, fingerprint, created_at)
    values (${TEST_TENANT}, ${key}, ${fingerprint}, now() - ${age}::interval)`;
}

describe("an Idempotency-Key claimed by a request that crashed", () => {
  it("is taken over by a retry once its lease has lapsed, which is answered normally", async () => {
    await leaveCrashedClaim("crashed-long-ago", "after a crash", "1 minute");
    const retry = await ctx.api.post("/conversations", body("after a crash"), { "idempotency-key": "crashed-long-ago" });
    expect(retry.status).toBe(201);
    const again = await ctx.api.post("/conversations", body("after a crash"), { "idempotency-key": "crashed-long-ago" });
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(retry.body.id);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect(await ctx.service.sql`select 1 from conversations where title = 'after a crash'`).toHaveLength(1);
  });

  it("is honoured until its lease lapses, then taken over by a retry that was waiting", async () => {
    await leaveCrashedClaim("crashed-just-now", "just crashed", "0 seconds");
    // The retry waits for the claim (as for a request in progress), sees it lapse, and takes it.
    const retry = await ctx.api.post("/conversations", body("just crashed"), { "idempotency-key": "crashed-just-now" });
    expect(retry.status).toBe(201);
    expect(await ctx.service.sql`select 1 from conversations where title = 'just crashed'`).toHaveLength(1);
  });

  it("is taken over by another request too, since the crashed one stored nothing", async () => {
    await leaveCrashedClaim("crashed-other", "first ask", "1 minute");
    const other = await ctx.api.post("/conversations", body("second ask"), { "idempotency-key": "crashed-other" });
    expect(other.status).toBe(201);
  });
});

describe("a live request's claim", () => {
  it("is renewed while the request works, so it never lapses under it", async () => {
    const db = drizzle(ctx.service.sql, { schema });
    const scope = { db, tenantId: TEST_TENANT, key: "slow-holder", ttlMs: 3_600_000, leaseMs: LEASE_MS, waitMs: 0 };
    const held = await claimIdempotencyKey(scope, "fingerprint-a");
    expect(held.claim).toBeDefined();
    // Twice the lease, renewed all along.
    await new Promise((r) => setTimeout(r, 2 * LEASE_MS));
    await expect(claimIdempotencyKey(scope, "fingerprint-a")).rejects.toMatchObject({ code: "idempotency_key_in_use" });
    await expect(claimIdempotencyKey(scope, "fingerprint-b")).rejects.toMatchObject({ code: "idempotency_key_reused" });
    expect(await held.claim!.record({ kind: "completion", completionId: "c1", created: 1 })).toBe(true);
    expect(await claimIdempotencyKey(scope, "fingerprint-a")).toMatchObject({ result: { completionId: "c1" } });
  });

  it("cannot be recorded by its request once another has taken it over", async () => {
    const db = drizzle(ctx.service.sql, { schema });
    const scope = { db, tenantId: TEST_TENANT, key: "stalled-holder", ttlMs: 3_600_000, leaseMs: LEASE_MS, waitMs: 0 };
    const stalled = await claimIdempotencyKey(scope, "fingerprint-a");
    // The holder stalls (no renewals reach Postgres): its claim ages past the lease.
    await ctx.service.sql`update idempotency_keys set created_at = now() - interval '1 minute' where key = 'stalled-holder'`;
    const taker = await claimIdempotencyKey(scope, "fingerprint-a");
    expect(taker.claim).toBeDefined();
    expect(await stalled.claim!.record({ kind: "completion", completionId: "late", created: 1 })).toBe(false);
    expect(await taker.claim!.record({ kind: "completion", completionId: "taker", created: 2 })).toBe(true);
    expect(await claimIdempotencyKey(scope, "fingerprint-a")).toMatchObject({ result: { completionId: "taker" } });
  });
});
